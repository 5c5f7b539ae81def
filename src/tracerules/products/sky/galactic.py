"""The ICRS -> galactic rotation, defined once and applied to scalars and to arrays.

The matrix is derived as astropy derives it: the ICRS -> FK5(J2000) frame bias, then the IAU
1958 galactic pole and origin precessed exactly from B1950 to J2000. It agrees with
astropy's `SkyCoord(...).galactic` to far better than a nanodegree.

`icrs_to_galactic` is the scalar form, in plain Python: rule conditions call `gal_lat()` on
every notice, and validating rules imports no numpy. The array forms serve sky maps and
figures; numpy is imported when they are first called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ICRS_TO_GALACTIC",
    "equatorial_to_galactic",
    "galactic_to_equatorial",
    "icrs_to_galactic",
]

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]

_MAS: Final = 1.0 / 3.6e6  # a milliarcsecond in degrees
# Frame bias of USNO Circular 179: eta0 = -19.9 mas, xi0 = 9.1 mas, dalpha0 = -22.9 mas.
_BIAS: Final = ((0, 19.9 * _MAS), (1, 9.1 * _MAS), (2, -22.9 * _MAS))
# IAU 1958 galactic north pole (RA, Dec) and origin longitude, precessed to J2000.
_NGP_RA: Final = 192.8594812065348
_NGP_DEC: Final = 27.12825118085622
_LON0: Final = 122.9319185680026


def _rotation(axis: int, angle_deg: float) -> Matrix:
    """Passive rotation matrix about x (0), y (1) or z (2), as in ERFA and astropy."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    if axis == 0:
        return ((1.0, 0.0, 0.0), (0.0, c, s), (0.0, -s, c))
    if axis == 1:
        return ((c, 0.0, -s), (0.0, 1.0, 0.0), (s, 0.0, c))
    return ((c, s, 0.0), (-s, c, 0.0), (0.0, 0.0, 1.0))


def _product(*matrices: Matrix) -> Matrix:
    """The matrix product, left to right."""
    out = matrices[0]
    for m in matrices[1:]:
        rows = (
            tuple(sum(out[i][k] * m[k][j] for k in range(3)) for j in range(3)) for i in range(3)
        )
        out = tuple(rows)  # type: ignore[assignment]
    return out


ICRS_TO_GALACTIC: Final[Matrix] = _product(
    _rotation(2, 180.0 - _LON0),
    _rotation(1, 90.0 - _NGP_DEC),
    _rotation(2, _NGP_RA),
    *(_rotation(axis, angle) for axis, angle in _BIAS),
)


def icrs_to_galactic(ra: float, dec: float) -> tuple[float, float]:
    """Galactic longitude and latitude in degrees of an ICRS (RA, Dec) in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    x, y, z = math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = ICRS_TO_GALACTIC
    gx, gy, gz = (
        m00 * x + m01 * y + m02 * z,
        m10 * x + m11 * y + m12 * z,
        m20 * x + m21 * y + m22 * z,
    )
    lon = math.degrees(math.atan2(gy, gx)) % 360.0
    return lon, math.degrees(math.atan2(gz, math.hypot(gx, gy)))


def equatorial_to_galactic(
    ra: ArrayLike, dec: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Galactic (l, b) in degrees of ICRS (RA, Dec) arrays in degrees."""
    return _rotate(ICRS_TO_GALACTIC, ra, dec)


def galactic_to_equatorial(
    lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ICRS (RA, Dec) in degrees of galactic (l, b) arrays in degrees: the inverse rotation."""
    transposed = tuple(zip(*ICRS_TO_GALACTIC, strict=True))
    return _rotate(transposed, lon, lat)  # type: ignore[arg-type]


def _rotate(
    matrix: Matrix, lon: ArrayLike, lat: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    import numpy as np

    lon_r, lat_r = np.radians(lon), np.radians(lat)
    xyz = np.stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)])
    x, y, z = np.tensordot(np.asarray(matrix), xyz, axes=1)
    return np.mod(np.degrees(np.arctan2(y, x)), 360.0), np.degrees(np.arctan2(z, np.hypot(x, y)))
