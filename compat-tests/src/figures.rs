//! Percentiles for the benchmarks' printed figures.

/// The `q` quantile (0.0 = best, 1.0 = worst) of samples sorted ascending,
/// by nearest rank; NaN when there are no samples, so an empty run prints
/// `NaN` instead of panicking.
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    sorted[at].into()
}
