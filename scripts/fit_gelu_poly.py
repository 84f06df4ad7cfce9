"""Derives the polynomial of simd::gelu (csrc/simd/activations.h). GELU(x) = x·Φ(x) is evaluated through the upper
normal tail Q(a) = 1 − Φ(a) = erfc(a/√2)/2 at a = |x|, written as

    Q(a) = t · e^(−a²/2) · P(t),   t = 1 / (1 + K·a),   a in [0, A_MAX]

so that the tail keeps its relative accuracy far out (GELU(x) = x·Q(|x|) for x < 0 has no cancellation, unlike
x·(1 + erf(x/√2))/2). P(t) = Q(a)·e^(a²/2) / t is smooth on t in [1/(1 + K·A_MAX), 1]; it is fitted by least squares
of the relative error on Chebyshev nodes in t (close to minimax), coefficients rounded to fp32. K and the degree were
picked by a scan (degree 9: K = 0.3 gave 1.1e-8, K = 0.2..0.35 gave 2.7e-8..6.6e-8; degree 8: at best 4e-8). Prints
the coefficients and the polynomial's own max relative error; the fp32 evaluation is measured by
csrc/tests/gelu_test.cpp (see csrc/simd/README.md). mpmath (a dependency of torch, via sympy) gives the exact tail.

    python scripts/fit_gelu_poly.py
"""
import mpmath
import numpy as np

K = float(np.float32(0.3))  # the kernel multiplies by 0.3f: fit for exactly that value
DEGREE = 9
A_MAX = 14.0  # Q(14)·14 < 2^-140: beyond it the kernel's tail is 0 (e^(−a²/2) flushes at a > 13.25 already)
mpmath.mp.dps = 30


def p_exact(t):
    a = (1 / t - 1) / K
    return np.array([float(mpmath.erfc(mpmath.mpf(v) / mpmath.sqrt(2)) / 2 * mpmath.exp(mpmath.mpf(v) ** 2 / 2))
                     for v in a]) / t


def t_range():
    return 1 / (1 + K * A_MAX), 1.0


def fit(m=2000):
    lo, hi = t_range()
    t = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
    f = p_exact(t)
    powers = np.stack([t ** j / f for j in range(DEGREE + 1)], axis=1)
    coeffs, *_ = np.linalg.lstsq(powers, np.ones(m), rcond=None)
    return coeffs.astype(np.float32)


def max_rel_error(coeffs):
    t = np.linspace(*t_range(), 40001)
    return float(np.abs(np.polyval(coeffs.astype(np.float64)[::-1], t) / p_exact(t) - 1).max())


if __name__ == "__main__":
    c = fit()
    for j, value in enumerate(c):
        mantissa, exponent = float(value).hex().split("p")
        print(f"p{j} = {mantissa.rstrip('0')}p{exponent}f  ({value:.9e})")
    err = max_rel_error(c)
    print(f"polynomial max relative error (fp32 coefficients, exact arithmetic): {err:.3e} ≈ {err / 2**-23:.3f} ulp")
