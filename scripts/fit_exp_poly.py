"""Derives the polynomial of csrc/simd/exp.h: e^r ≈ 1 + r + r²·(c2 + c3·r + c4·r² + c5·r³ + c6·r⁴) on the reduced
range |r| ≤ ln(2)/2, by least squares of the relative error on Chebyshev nodes (close to minimax), with the
coefficients rounded to fp32. Prints them and the polynomial's own max relative error (the fp32 evaluation error is
measured by csrc/tests, see csrc/simd/README.md).

    python scripts/fit_exp_poly.py           e^r, degree 6 (simd::exp)
    python scripts/fit_exp_poly.py --exp2    2^r ≈ 1 + c1·r + … + c5·r⁵ on |r| ≤ 1/2, degree 5 (simd::exp2_nonpositive)
"""
import sys

import numpy as np

HALF_LN2 = np.log(2.0) / 2
DEGREE = 6


def fit():
    m = 8000
    r = HALF_LN2 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    f = np.exp(r)
    powers = np.stack([r ** k / f for k in range(2, DEGREE + 1)], axis=1)
    coeffs, *_ = np.linalg.lstsq(powers, (f - 1 - r) / f, rcond=None)
    return coeffs.astype(np.float32)


def max_rel_error(coeffs):
    r = np.linspace(-HALF_LN2, HALF_LN2, 400001)
    p = 1 + r + sum(float(c) * r ** (k + 2) for k, c in enumerate(coeffs))
    return float(np.abs(p / np.exp(r) - 1).max())


def fit_exp2(degree=5):
    m = 8000
    r = 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    f = np.exp2(r)
    powers = np.stack([r ** k / f for k in range(1, degree + 1)], axis=1)
    coeffs, *_ = np.linalg.lstsq(powers, (f - 1) / f, rcond=None)
    coeffs = coeffs.astype(np.float32)
    rr = np.linspace(-0.5, 0.5, 400001)
    p = 1 + sum(float(c) * rr ** (k + 1) for k, c in enumerate(coeffs))
    return coeffs, float(np.abs(p / np.exp2(rr) - 1).max())


if __name__ == "__main__" and "--exp2" in sys.argv:
    c, err = fit_exp2()
    for k, value in enumerate(c, start=1):
        print(f"c{k} = {float(value).hex()}  ({value:.9e})")
    print(f"polynomial max relative error (fp32 coefficients, exact arithmetic): {err:.3e}")
elif __name__ == "__main__":
    c = fit()
    for k, value in enumerate(c, start=2):
        print(f"c{k} = {float(value).hex()}  ({value:.9e})")
    print(f"polynomial max relative error (fp32 coefficients, exact arithmetic): {max_rel_error(c):.3e} "
          f"≈ {max_rel_error(c) / 2**-23:.3f} ulp")
