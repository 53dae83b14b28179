//! SVG chart geometry for the memo: stacked traffic share per deployment over time (with fault
//! windows) and latency percentiles per phase. Computes numbers and path strings made only of
//! numbers and path commands; the templates draw them, escaped like everything else.

use serde::Serialize;

use crate::model::{Phase, Traffic};

/// Chart canvas, in SVG user units. Scaled to the page width by `viewBox`.
pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

/// At most this many points per series: a one-hour phase (3,600 s) is averaged into buckets so
/// the HTML stays small (well under 2 MB) and renders fast, while a short phase keeps every second.
pub const MAX_POINTS: usize = 360;

/// Colour-blind-safe palette (Okabe–Ito), assigned by deployment in inventory order.
pub const PALETTE: &[&str] = &[
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

/// Fixed-precision coordinate: the same input always prints the same bytes.
fn c(v: f64) -> String {
    format!("{v:.1}")
}

#[derive(Clone, Debug, Serialize)]
pub struct Area {
    pub deployment: String,
    pub color: String,
    /// SVG path data (numbers and `M`/`L`/`Z` only).
    pub d: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Band {
    pub x: String,
    pub width: String,
    pub label: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tick {
    pub pos: String,
    pub label: String,
}

/// Stacked 100 % area chart of who served the traffic, second by second.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficChart {
    pub areas: Vec<Area>,
    pub faults: Vec<Band>,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    /// Number of points drawn per series after downsampling.
    pub points: usize,
    /// Seconds per drawn point.
    pub bucket_s: u64,
    pub plot: Plot,
}

/// The plot rectangle inside the canvas.
#[derive(Clone, Debug, Serialize)]
pub struct Plot {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub bottom: String,
    pub right: String,
    /// Right edge of the y-axis labels.
    pub label_x: String,
}

fn plot() -> Plot {
    Plot {
        x: c(LEFT),
        y: c(TOP),
        width: c(WIDTH - LEFT - RIGHT),
        height: c(HEIGHT - TOP - BOTTOM),
        bottom: c(HEIGHT - BOTTOM),
        right: c(WIDTH - RIGHT),
        label_x: c(LEFT - 6.0),
    }
}

/// Sums `served` into buckets of `k` steps.
fn bucketed(served: &[u32], k: usize) -> Vec<u64> {
    served
        .chunks(k.max(1))
        .map(|ch| ch.iter().map(|v| u64::from(*v)).sum())
        .collect()
}

/// Builds the traffic chart of one phase. `color` picks a deployment's colour.
pub fn traffic(phase: &Phase, color: &dyn Fn(&str) -> String) -> TrafficChart {
    let t: &Traffic = &phase.traffic;
    let len = t.series.iter().map(|s| s.served.len()).max().unwrap_or(0);
    let k = len.div_ceil(MAX_POINTS).max(1);
    let buckets: Vec<Vec<u64>> = t.series.iter().map(|s| bucketed(&s.served, k)).collect();
    let n = buckets.iter().map(Vec::len).max().unwrap_or(0);
    let step = t.step_s.max(1);
    let span_s = (len as u64).max(1) * step;
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let x_of_s = |s: f64| LEFT + pw * (s / span_s as f64).clamp(0.0, 1.0);
    let y_of = |share: f64| TOP + ph * (1.0 - share);
    // x of bucket b: its first second, and the last bucket also closes at the right edge.
    let xs: Vec<f64> = (0..=n)
        .map(|b| x_of_s((b as u64 * k as u64 * step).min(span_s) as f64))
        .collect();
    let totals: Vec<u64> = (0..n)
        .map(|b| buckets.iter().map(|v| v.get(b).copied().unwrap_or(0)).sum())
        .collect();
    let mut lower = vec![0.0_f64; n];
    let mut areas = Vec::new();
    for (i, s) in t.series.iter().enumerate() {
        let upper: Vec<f64> = (0..n)
            .map(|b| {
                let v = buckets[i].get(b).copied().unwrap_or(0);
                let share = if totals[b] == 0 {
                    0.0
                } else {
                    v as f64 / totals[b] as f64
                };
                lower[b] + share
            })
            .collect();
        // Step shape: each bucket is a flat segment from its start to its end.
        let mut d = String::new();
        for b in 0..n {
            let cmd = if b == 0 { 'M' } else { 'L' };
            d.push_str(&format!(
                "{cmd}{} {}L{} {}",
                c(xs[b]),
                c(y_of(upper[b])),
                c(xs[b + 1]),
                c(y_of(upper[b]))
            ));
        }
        for b in (0..n).rev() {
            d.push_str(&format!(
                "L{} {}L{} {}",
                c(xs[b + 1]),
                c(y_of(lower[b])),
                c(xs[b]),
                c(y_of(lower[b]))
            ));
        }
        if n > 0 {
            d.push('Z');
        }
        areas.push(Area {
            deployment: s.deployment.clone(),
            color: color(&s.deployment),
            d,
        });
        lower = upper;
    }
    let faults = phase
        .fault_windows
        .iter()
        .map(|w| {
            let a = x_of_s(w.start_s.saturating_sub(t.start_s) as f64);
            let b = x_of_s(w.end_s.saturating_sub(t.start_s) as f64);
            Band {
                x: c(a),
                width: c((b - a).max(1.0)),
                label: format!(
                    "{}: {} ({}–{} s)",
                    w.deployment, w.fault, w.start_s, w.end_s
                ),
            }
        })
        .collect();
    let x_ticks = (0..=4)
        .map(|i| {
            let s = span_s * i / 4;
            Tick {
                pos: c(x_of_s(s as f64)),
                label: format!("{} s", t.start_s + s),
            }
        })
        .collect();
    let y_ticks = [0.0, 0.5, 1.0]
        .iter()
        .map(|v| Tick {
            pos: c(y_of(*v)),
            label: format!("{:.0}%", v * 100.0),
        })
        .collect();
    TrafficChart {
        areas,
        faults,
        x_ticks,
        y_ticks,
        points: n,
        bucket_s: k as u64 * step,
        plot: plot(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub class: &'static str,
    pub label: String,
}

/// Grouped bars: p50, p95, p99 per phase.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyChart {
    pub bars: Vec<Bar>,
    pub x_labels: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub plot: Plot,
}

/// A round axis maximum ≥ `v`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

pub fn latency(phases: &[Phase]) -> LatencyChart {
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let max = nice_ceiling(
        phases
            .iter()
            .map(|p| p.latency.p99_ms)
            .fold(0.0_f64, f64::max),
    );
    let slot = pw / phases.len().max(1) as f64;
    let bar_w = (slot * 0.8 / 3.0).min(40.0);
    let mut bars = Vec::new();
    let mut x_labels = Vec::new();
    for (i, p) in phases.iter().enumerate() {
        let centre = LEFT + slot * (i as f64 + 0.5);
        let first = centre - bar_w * 1.5;
        for (j, (class, v)) in [
            ("p50", p.latency.p50_ms),
            ("p95", p.latency.p95_ms),
            ("p99", p.latency.p99_ms),
        ]
        .into_iter()
        .enumerate()
        {
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let h = (ph * v / max).clamp(0.0, ph);
            bars.push(Bar {
                x: c(first + bar_w * j as f64),
                y: c(TOP + ph - h),
                width: c(bar_w * 0.9),
                height: c(h.max(0.5)),
                class,
                label: format!("{} {class}: {v:.1} ms", p.name),
            });
        }
        x_labels.push(Tick {
            pos: c(centre),
            label: p.name.clone(),
        });
    }
    let y_ticks = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| Tick {
            pos: c(TOP + ph * (1.0 - f)),
            label: format!("{:.0} ms", max * f),
        })
        .collect();
    LatencyChart {
        bars,
        x_labels,
        y_ticks,
        plot: plot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_1_2_5() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(450.0), 500.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }

    #[test]
    fn buckets_sum_their_seconds() {
        assert_eq!(bucketed(&[1, 2, 3, 4, 5], 2), vec![3, 7, 5]);
    }
}
