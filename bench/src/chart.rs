//! The Markdown table (median and range over repetitions) and the PNG chart.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{RunResult, Target};

/// Runs of one (target, clients, mode).
struct Group<'a> {
    runs: Vec<&'a RunResult>,
}

/// (median, lowest, highest).
pub fn median_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn groups(results: &[RunResult]) -> BTreeMap<(String, usize, Target), Group<'_>> {
    let mut map: BTreeMap<(String, usize, Target), Group<'_>> = BTreeMap::new();
    for r in results {
        map.entry((r.mode.clone(), r.clients, r.target))
            .or_insert_with(|| Group { runs: Vec::new() })
            .runs
            .push(r);
    }
    map
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `median (lowest–highest)` with `digits` decimals.
fn spread(values: Vec<f64>, digits: usize) -> String {
    let (med, lo, hi) = median_range(values);
    format!("{med:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

pub fn markdown(results: &[RunResult]) -> String {
    let mut out = String::new();
    out.push_str("| mode | N | target | deliveries/s, M (median, range) | server CPU-µs per delivery | server CPU-µs per message | lost | out of order | p50 / p99 / p99.9 / max latency (ms) | send lag p99 (ms) | measured s | server RSS peak / at end of measurement (MiB) | generator CPU-µs per delivery | runs |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for ((mode, n, target), g) in groups(results) {
        if mode == "idle" {
            continue;
        }
        let of = |f: &dyn Fn(&RunResult) -> f64| g.runs.iter().map(|r| f(r)).collect::<Vec<_>>();
        let pick = |f: &dyn Fn(&RunResult) -> f64| median_range(of(f)).0;
        let lost: u64 = g.runs.iter().map(|r| r.lost).sum();
        let ooo: u64 = g.runs.iter().map(|r| r.out_of_order).sum();
        let errors: Vec<&str> = g.runs.iter().filter_map(|r| r.error.as_deref()).collect();
        out.push_str(&format!(
            "| {mode} | {n} | {target:?}{} | {} | {} | {} | {lost} | {ooo} | {:.1} / {:.1} / {:.1} / {:.1} | {} | {:.1} | {:.1} / {:.1} | {:.2} | {} |\n",
            if errors.is_empty() { String::new() } else { format!(" ⚠ {}", errors[0]) },
            spread(of(&|r| r.deliveries_per_s / 1e6), 2),
            spread(of(&|r| r.server_cpu_us_per_delivery), 3),
            spread(of(&|r| r.server_cpu_us_per_message), 1),
            pick(&|r| r.latency_us.p50 as f64) / 1000.0,
            pick(&|r| r.latency_us.p99 as f64) / 1000.0,
            pick(&|r| r.latency_us.p999 as f64) / 1000.0,
            pick(&|r| r.latency_us.max as f64) / 1000.0,
            g.runs[0]
                .lag_us
                .as_ref()
                .map_or("–".to_string(), |_| format!("{:.1}", pick(&|r| r.lag_us.as_ref().map_or(0.0, |l| l.p99 as f64)) / 1000.0)),
            pick(&|r| r.duration_s),
            mib(g.runs.iter().map(|r| r.server_rss_peak).max().unwrap_or(0)),
            pick(&|r| mib(r.server_rss_during)),
            pick(&|r| r.loadgen_cpu_us_per_delivery),
            g.runs.len(),
        ));
    }
    out.push_str("\n| idle | N | target | server RSS per connection (KiB) | server RSS (MiB) | error |\n|---|---|---|---|---|---|\n");
    for ((mode, n, target), g) in groups(results) {
        if mode != "idle" {
            continue;
        }
        let r = g.runs[0];
        out.push_str(&format!(
            "| idle | {n} | {target:?} | {:.1} | {:.1} | {} |\n",
            r.rss_per_connection.unwrap_or(0.0) / 1024.0,
            mib(r.server_rss_after),
            r.error.as_deref().unwrap_or("")
        ));
    }
    out
}

fn target_color(t: Target) -> RGBColor {
    match t {
        Target::Tertulia => RGBColor(0x2b, 0x8a, 0x3e),
        Target::Redis => RGBColor(0xc9, 0x2a, 0x2a),
        Target::Nats => RGBColor(0x19, 0x71, 0xc2),
        Target::Irc => RGBColor(0xe6, 0x77, 0x00),
    }
}

fn load_font() -> Result<(), String> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let bytes = candidates
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no TrueType font found (apt install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "could not load the font".to_string())
}

/// One target's points: (index of the room size, value).
type Series = (Target, Vec<(usize, f64)>);

/// The largest value of any series, and at least `floor`.
fn max_value(series: &[Series], floor: f64) -> f64 {
    series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
        .fold(floor, f64::max)
}

/// One panel: a line with points per target against the room sizes, and a legend.
fn panel<Y>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    y_desc: &str,
    y_range: Y,
    sizes: &[usize],
    series: &[Series],
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let x_label = |i: &usize| sizes.get(*i).map_or(String::new(), |n| format!("N = {n}"));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0usize..sizes.len().max(1), y_range)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(sizes.len().max(1))
        .x_label_formatter(&x_label)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (t, points) in series {
        let color = target_color(*t);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(i, v)| (*i, *v)),
                color.stroke_width(3),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{t:?}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(i, v)| Circle::new((*i, *v), 5, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())
}

/// Two panels: saturated deliveries/s and rate-mode p99 latency, by room size.
pub fn draw(results: &[RunResult], path: &Path) -> Result<(), String> {
    load_font()?;
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(700);
    let groups = groups(results);
    let sizes: Vec<usize> = {
        let mut s: Vec<usize> = results
            .iter()
            .filter(|r| r.mode != "idle")
            .map(|r| r.clients)
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let targets = [Target::Tertulia, Target::Redis, Target::Nats, Target::Irc];
    let series = |mode_prefix: &str, f: &dyn Fn(&RunResult) -> f64| -> Vec<Series> {
        targets
            .iter()
            .map(|&t| {
                let points = sizes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &n)| {
                        groups
                            .iter()
                            .find(|((m, gn, gt), _)| {
                                m.starts_with(mode_prefix) && *gn == n && *gt == t
                            })
                            .map(|(_, g)| {
                                (i, median_range(g.runs.iter().map(|r| f(r)).collect()).0)
                            })
                    })
                    .collect();
                (t, points)
            })
            .filter(|(_, p): &Series| !p.is_empty())
            .collect()
    };
    let thr = series("window", &|r| r.deliveries_per_s / 1e6);
    panel(
        &left,
        "Saturated (1 600 messages in flight): deliveries/s, millions",
        "M deliveries/s",
        0f64..max_value(&thr, 0.1) * 1.15,
        &sizes,
        &thr,
    )?;
    let lat = series("rate", &|r| (r.latency_us.p99 as f64 / 1000.0).max(0.01));
    panel(
        &right,
        "10 msg/s per client: p99 latency, ms (log)",
        "p99 ms",
        (0.01f64..max_value(&lat, 1.0) * 2.0).log_scale(),
        &sizes,
        &lat,
    )?;
    root.present().map_err(|e| e.to_string())
}
