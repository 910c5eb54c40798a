//! Server-rendered SVG charts of the rollups (DB → **poll**): tasks finished per bucket
//! stacked by outcome, and p50/p95 fetch time. Pure functions of the bucket list, so they
//! are unit tested; no JavaScript chart library (DESIGN §12).
//!
//! Readable in light and dark schemes: text and grid use `currentColor` (the page's text
//! colour), the outcome colours have a dark-scheme variant in the SVG's own `<style>`.
//! Times on the axis are UTC.

use std::fmt::Write;

use crate::store::rollups::Bucket;

/// A "nice" axis: `top` is the smallest 1/2/5×10ⁿ multiple of `step` ≥ the data's max, with
/// at most `max_ticks` steps. A max of 0 still gives a 0..1 axis (an empty chart has a
/// scale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub top: f64,
    pub step: f64,
}

impl Scale {
    pub fn nice(max: f64, max_ticks: usize) -> Scale {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let ticks = max_ticks.max(1) as f64;
        let raw = max / ticks;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw - 1e-9)
            .unwrap_or(10.0 * mag);
        // Whole counts: never a step below 1 for integer data.
        let step = if max >= 1.0 { step.max(1.0) } else { step };
        let top = (max / step).ceil() * step;
        Scale { top, step }
    }

    /// The tick values, 0 and `top` included.
    pub fn ticks(&self) -> Vec<f64> {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    /// `v` as a fraction of the axis (0 at the bottom, 1 at the top), clamped.
    pub fn frac(&self, v: f64) -> f64 {
        if self.top <= 0.0 {
            0.0
        } else {
            (v / self.top).clamp(0.0, 1.0)
        }
    }
}

/// `HH:MM` (UTC) of an epoch-ms instant.
pub fn hhmm(ms: i64) -> String {
    let m = ms.div_euclid(60_000).rem_euclid(1_440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A duration for an axis label: `250 ms`, `1.5 s`, `12 s`.
pub fn duration_label(ms: f64) -> String {
    if ms < 1_000.0 {
        format!("{} ms", ms.round() as i64)
    } else if ms < 10_000.0 {
        let s = format!("{:.1}", ms / 1_000.0);
        format!("{} s", s.trim_end_matches(".0"))
    } else {
        format!("{} s", (ms / 1_000.0).round() as i64)
    }
}

/// A count for an axis label: `950`, `1.2k`, `15k`.
pub fn count_label(v: f64) -> String {
    if v < 1_000.0 {
        format!("{}", v.round() as i64)
    } else if v < 10_000.0 {
        let s = format!("{:.1}", v / 1_000.0);
        format!("{}k", s.trim_end_matches(".0"))
    } else {
        format!("{}k", (v / 1_000.0).round() as i64)
    }
}

/// Size and labelling of one chart.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    /// Axis labels and grid lines (off for the compact chart on /tasks).
    pub axes: bool,
    /// Label every n-th bucket on the x axis.
    pub label_every: usize,
}

impl Frame {
    fn margins(&self) -> (f64, f64, f64, f64) {
        // left, right, top, bottom
        if self.axes {
            (44.0, 8.0, 8.0, 20.0)
        } else {
            (2.0, 2.0, 2.0, 2.0)
        }
    }
}

// The chart's colours live in static/app.css (`.wt-chart …`): an inline <style> would
// break the strict Content-Security-Policy (style-src 'self').

/// The outcomes in stacking order (bottom first) with their parts of a bucket.
fn parts(b: &Bucket) -> [(&'static str, i64); 5] {
    [
        ("ok", b.ok),
        ("truncated", b.truncated),
        ("http_error", b.http_error),
        ("failed", b.failed),
        ("cancelled", b.cancelled),
    ]
}

fn total(b: &Bucket) -> i64 {
    parts(b).iter().map(|(_, n)| n).sum()
}

fn open_svg(out: &mut String, f: &Frame, label: &str) {
    let _ = write!(
        out,
        "<svg class=\"wt-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{label}\">",
        w = f.width,
        h = f.height
    );
}

/// Horizontal grid lines with their labels, and the x-axis labels.
fn axes(
    out: &mut String,
    f: &Frame,
    scale: &Scale,
    buckets: &[Bucket],
    y_label: fn(f64) -> String,
) {
    if !f.axes {
        return;
    }
    let (l, r, t, b) = f.margins();
    let plot_h = f.height - t - b;
    for v in scale.ticks() {
        let y = t + plot_h * (1.0 - scale.frac(v));
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{l}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = f.width - r,
            tx = l - 4.0,
            ty = y + 4.0,
            label = y_label(v)
        );
    }
    let n = buckets.len().max(1);
    let slot = (f.width - l - r) / n as f64;
    let every = f.label_every.max(1);
    for (i, bk) in buckets.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{}</text>",
                hhmm(bk.start),
                x = l + slot * (i as f64 + 0.5),
                y = f.height - 5.0
            );
        }
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\"/>",
        x2 = f.width - r,
        y = f.height - b
    );
}

/// Tasks finished per bucket, stacked by outcome. Each non-empty segment is a `<rect>`
/// with the outcome as class and `data-start` / `data-count`, and a `<title>` tooltip.
pub fn throughput_svg(buckets: &[Bucket], f: &Frame) -> String {
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, f, "tasks finished per interval, by outcome");
    let max = buckets.iter().map(total).max().unwrap_or(0) as f64;
    let scale = Scale::nice(max, 4);
    axes(&mut out, f, &scale, buckets, count_label);
    let (l, r, t, b) = f.margins();
    let plot_h = f.height - t - b;
    let n = buckets.len().max(1);
    let slot = (f.width - l - r) / n as f64;
    let bar_w = (slot * 0.8).max(1.0);
    for (i, bk) in buckets.iter().enumerate() {
        let x = l + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0i64;
        for (class, count) in parts(bk) {
            if count <= 0 {
                continue;
            }
            let y0 = t + plot_h * (1.0 - scale.frac(base as f64));
            let y1 = t + plot_h * (1.0 - scale.frac((base + count) as f64));
            let _ = write!(
                out,
                "<rect class=\"{class}\" data-start=\"{start}\" data-count=\"{count}\" \
                 x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\">\
                 <title>{time} UTC: {count} {label}</title></rect>",
                start = bk.start,
                h = (y0 - y1).max(0.5),
                time = hhmm(bk.start),
                label = class.replace('_', " ")
            );
            base += count;
        }
    }
    out.push_str("</svg>");
    out
}

/// p50 (solid) and p95 (dashed) fetch time per bucket; buckets without fetches break the
/// line.
pub fn latency_svg(buckets: &[Bucket], f: &Frame) -> String {
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, f, "fetch time p50 and p95");
    let max = buckets
        .iter()
        .filter_map(|b| b.p95_ms.or(b.p50_ms))
        .max()
        .unwrap_or(0) as f64;
    let scale = Scale::nice(max, 4);
    axes(&mut out, f, &scale, buckets, duration_label);
    let (l, r, t, b) = f.margins();
    let plot_h = f.height - t - b;
    let n = buckets.len().max(1);
    let slot = (f.width - l - r) / n as f64;
    for (class, pick) in [
        ("p50", (|b: &Bucket| b.p50_ms) as fn(&Bucket) -> Option<i64>),
        ("p95", |b: &Bucket| b.p95_ms),
    ] {
        let mut d = String::new();
        let mut dots = String::new();
        let mut pen_down = false;
        for (i, bk) in buckets.iter().enumerate() {
            match pick(bk) {
                Some(v) => {
                    let x = l + slot * (i as f64 + 0.5);
                    let y = t + plot_h * (1.0 - scale.frac(v as f64));
                    let _ = write!(d, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                    // A dot too, so that a lone bucket (no neighbour to draw to) shows.
                    let _ = write!(
                        dots,
                        "<circle class=\"{class}-dot\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\"><title>{} UTC: {class} {}</title></circle>",
                        hhmm(bk.start),
                        duration_label(v as f64)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            let _ = write!(out, "<path class=\"{class}\" d=\"{}\"/>", d.trim_end());
        }
        out.push_str(&dots);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(start: i64, ok: i64, failed: i64, p50: Option<i64>) -> Bucket {
        Bucket {
            start,
            ok,
            http_error: 0,
            failed,
            truncated: 0,
            cancelled: 0,
            p50_ms: p50,
            p95_ms: p50.map(|v| v * 2),
        }
    }

    #[test]
    fn nice_scales() {
        assert_eq!(
            Scale::nice(0.0, 4),
            Scale {
                top: 1.0,
                step: 1.0
            }
        );
        assert_eq!(
            Scale::nice(3.0, 4),
            Scale {
                top: 3.0,
                step: 1.0
            }
        );
        assert_eq!(
            Scale::nice(7.0, 4),
            Scale {
                top: 8.0,
                step: 2.0
            }
        );
        assert_eq!(
            Scale::nice(95.0, 4),
            Scale {
                top: 100.0,
                step: 50.0
            }
        );
        assert_eq!(
            Scale::nice(1234.0, 4),
            Scale {
                top: 1500.0,
                step: 500.0
            }
        );
        assert_eq!(Scale::nice(f64::NAN, 4).top, 1.0);
        let s = Scale::nice(7.0, 4);
        assert_eq!(s.ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(s.frac(4.0), 0.5);
        assert_eq!(s.frac(100.0), 1.0);
        // Never more ticks than asked for (plus the zero line).
        for max in [1.0, 9.0, 11.0, 99.0, 101.0, 4_999.0, 123_456.0] {
            let s = Scale::nice(max, 4);
            assert!(s.top >= max, "{max}: {s:?}");
            assert!(s.ticks().len() <= 5, "{max}: {s:?}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(hhmm(0), "00:00");
        assert_eq!(
            hhmm(86_400_000 + 13 * 3_600_000 + 7 * 60_000 + 59_999),
            "13:07"
        );
        assert_eq!(duration_label(250.0), "250 ms");
        assert_eq!(duration_label(1_500.0), "1.5 s");
        assert_eq!(duration_label(2_000.0), "2 s");
        assert_eq!(duration_label(30_000.0), "30 s");
        assert_eq!(count_label(950.0), "950");
        assert_eq!(count_label(1_200.0), "1.2k");
        assert_eq!(count_label(15_000.0), "15k");
    }

    #[test]
    fn bars_stack_by_outcome_and_scale_to_the_tallest() {
        let f = Frame {
            width: 100.0,
            height: 100.0,
            axes: false,
            label_every: 1,
        };
        let svg = throughput_svg(&[bucket(0, 0, 0, None), bucket(60_000, 3, 1, Some(80))], &f);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // Empty bucket: no rect. Full bucket: an ok rect and a failed rect stacked on it.
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("class=\"ok\" data-start=\"60000\" data-count=\"3\""));
        assert!(svg.contains("class=\"failed\" data-start=\"60000\" data-count=\"1\""));
        // Plot height 96 on a 0..4 scale: ok is 72 tall from the bottom (y = 98 - 72).
        assert!(
            svg.contains("y=\"26.0\" width=\"38.4\" height=\"72.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("y=\"2.0\" width=\"38.4\" height=\"24.0\""),
            "{svg}"
        );
    }

    #[test]
    fn axes_have_labels_and_latency_lines_break_on_gaps() {
        let f = Frame {
            width: 300.0,
            height: 120.0,
            axes: true,
            label_every: 2,
        };
        let b = [
            bucket(0, 1, 0, Some(100)),
            bucket(60_000, 1, 0, Some(300)),
            bucket(120_000, 0, 0, None),
            bucket(180_000, 1, 0, Some(200)),
        ];
        let svg = throughput_svg(&b, &f);
        assert!(svg.contains(">00:00</text>") && svg.contains(">00:02</text>"));
        assert!(!svg.contains(">00:01</text>"));
        let lat = latency_svg(&b, &f);
        assert!(lat.contains(">600 ms</text>"), "{lat}");
        let p50 = lat
            .split("class=\"p50\" d=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        assert_eq!(p50.matches('M').count(), 2, "{p50}");
        assert_eq!(p50.matches('L').count(), 1, "{p50}");
        // Every bucket with fetches has its dots (a lone bucket is visible too).
        assert_eq!(lat.matches("<circle class=\"p50-dot\"").count(), 3);
        assert_eq!(lat.matches("<circle class=\"p95-dot\"").count(), 3);
    }
}
