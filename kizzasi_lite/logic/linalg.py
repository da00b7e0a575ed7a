"""Small dense linear algebra in plain Python, for compile-time work on constraint data.

Constraint matrices are tiny and constant, so they are factorised once, on the host, without
asking any array backend for ``eigh``.
"""

from __future__ import annotations

import math


def jacobi_eigh(
    A: list[list[float]], *, sweeps: int = 100
) -> tuple[list[float], list[list[float]]]:
    """Eigenvalues and eigenvectors (columns of ``V``) of a small symmetric matrix, by cyclic
    Jacobi rotations in plain Python (Golub & Van Loan, Matrix Computations, 8.5)."""
    n = len(A)
    a = [list(map(float, r)) for r in A]
    V = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(sweeps):
        off = sum(a[i][j] ** 2 for i in range(n) for j in range(n) if i != j)
        if off <= 1e-30 * max(1e-300, sum(a[i][i] ** 2 for i in range(n))) or off == 0.0:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                if a[p][q] == 0.0:
                    continue
                theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q])
                t = math.copysign(1.0, theta) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):  # A <- A J
                    akp, akq = a[k][p], a[k][q]
                    a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
                for k in range(n):  # A <- J^T A
                    apk, aqk = a[p][k], a[q][k]
                    a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
                for k in range(n):
                    vkp, vkq = V[k][p], V[k][q]
                    V[k][p], V[k][q] = c * vkp - s * vkq, s * vkp + c * vkq
    return [a[i][i] for i in range(n)], V


__all__ = ["jacobi_eigh"]
