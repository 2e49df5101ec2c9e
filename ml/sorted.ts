/** Binary search in ascending arrays (numpy's searchsorted): one copy for every binning in ml/. */

/** The first index i with a[i] >= v (searchsorted side 'left'): how many elements are < v. */
export function lowerBound(a: ArrayLike<number>, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The first index i with a[i] > v (searchsorted side 'right'): how many elements are <= v. */
export function upperBound(a: ArrayLike<number>, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
