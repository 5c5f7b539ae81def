"""The hand-written HEALPix indexing that astropy-healpix replaced (issue 12), kept verbatim as
a reference: tests check the project's function gives the same answers on real sky maps, and
bench/healpix.py times it against astropy-healpix.

``uniq_to_order_ipix`` is as it was in ``products/sky/healpix.py`` before the switch. The
other indexing functions (pixel centres, ``lonlat_to_nest``) are still ours: astropy-healpix
was slower for them (see bench/healpix.py).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tracerules.products.sky.healpix import MAX_ORDER

IntArray = NDArray[np.int64]


def uniq_to_order_ipix(uniq: ArrayLike) -> tuple[IntArray, IntArray]:
    """Split NUNIQ numbers into (order, nested pixel index) arrays."""
    u = np.asarray(uniq, dtype=np.int64)
    if u.size and (int(u.min()) < 4 or int(u.max()) >= 16 << (2 * MAX_ORDER)):
        raise ValueError(f"NUNIQ numbers must lie in [4, 2**62) (orders 0..{MAX_ORDER})")
    # log2 on float64 can round up just below a power of two (> 2**53), so fix the estimate
    # with exact integer comparisons against 4 * 4**order <= uniq < 16 * 4**order.
    order = (np.floor(np.log2(u.astype(np.float64))).astype(np.int64) - 2) // 2
    order -= u < (np.int64(4) << (2 * order))
    order += u >= (np.int64(16) << (2 * order))
    return order, u - (np.int64(4) << (2 * order))
