"""Sky maps and where things are in the sky: HEALPix maths, sky-map figures, observability, and
the pictures of skymap.png."""
