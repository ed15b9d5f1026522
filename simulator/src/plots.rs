//! The plots (SVG and PNG, with plotters) and the self-contained HTML report that shows them
//! with the summary.

use crate::report::{Report, Timing};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The font every plot's text is drawn in, embedded so no system font is needed.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "hoplite-mono";
const SIZE: (u32, u32) = (800, 480);

/// Why a report file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing or writing a plot failed.
    #[error("{path}: {message}")]
    Draw {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing the HTML failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// One plot: its file stem, title, and data.
struct Plot {
    stem: &'static str,
    title: &'static str,
    x_label: &'static str,
    y_label: &'static str,
    shape: Shape,
}

enum Shape {
    /// Labelled bars.
    Bars(Vec<(String, f64)>),
    /// A line through points.
    Line(Vec<(f64, f64)>),
}

/// The files a report wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// The HTML report.
    pub html: PathBuf,
    /// Every plot, SVG and PNG.
    pub plots: Vec<PathBuf>,
}

/// Writes every plot into `dir` as SVG and PNG, and `report.html` showing them with the
/// summary.
pub fn write_all(report: &Report, timing: &Timing, dir: &Path) -> Result<Written, PlotError> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded font is a valid TrueType file; plotters keeps it for every plot.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
    let plots = plots(report);
    let mut written = Vec::new();
    for plot in &plots {
        let svg = dir.join(format!("{}.svg", plot.stem));
        let png = dir.join(format!("{}.png", plot.stem));
        draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), plot).map_err(|message| {
            PlotError::Draw {
                path: svg.clone(),
                message,
            }
        })?;
        draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), plot).map_err(|message| {
            PlotError::Draw {
                path: png.clone(),
                message,
            }
        })?;
        written.extend([svg, png]);
    }
    let html = dir.join("report.html");
    let page = html_page(report, timing, &plots, dir)?;
    std::fs::write(&html, page).map_err(|source| PlotError::Io {
        path: html.clone(),
        source,
    })?;
    Ok(Written {
        html,
        plots: written,
    })
}

fn plots(report: &Report) -> Vec<Plot> {
    let p = &report.payments;
    let success = p
        .by_amount
        .iter()
        .map(|(low, n, ok)| (format!("≥{low}"), 100.0 * *ok as f64 / (*n).max(1) as f64))
        .collect();
    let n = p.latencies.len().max(1) as f64;
    let cdf = p
        .latencies
        .iter()
        .enumerate()
        .map(|(i, ms)| (*ms, (i + 1) as f64 / n))
        .collect();
    let mut fee_buckets: Vec<(String, f64)> = Vec::new();
    for fee in &p.fees {
        let label = if *fee < 1.0 {
            "0".to_owned()
        } else {
            format!("≥{}", 10u64.pow((*fee as u64).ilog10()))
        };
        match fee_buckets.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1.0,
            None => fee_buckets.push((label, 1.0)),
        }
    }
    let hops = p
        .route_length
        .iter()
        .map(|(hops, count)| (hops.to_string(), *count as f64))
        .collect();
    vec![
        Plot {
            stem: "success_by_amount",
            title: "Success rate by amount",
            x_label: "amount (tokens)",
            y_label: "succeeded (%)",
            shape: Shape::Bars(success),
        },
        Plot {
            stem: "latency_cdf",
            title: "Payment latency (virtual), CDF",
            x_label: "latency (ms)",
            y_label: "share of successful payments",
            shape: Shape::Line(cdf),
        },
        Plot {
            stem: "fees",
            title: "Fees paid per successful payment",
            x_label: "fee (tokens)",
            y_label: "payments",
            shape: Shape::Bars(fee_buckets),
        },
        Plot {
            stem: "route_length",
            title: "Route length of successful payments",
            x_label: "hops",
            y_label: "payments",
            shape: Shape::Bars(hops),
        },
        Plot {
            stem: "hub_liquidity",
            title: "The hub's outbound liquidity",
            x_label: "virtual time (s)",
            y_label: "spendable (tokens)",
            shape: Shape::Line(report.hub_liquidity.clone()),
        },
    ]
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, plot: &Plot) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let font = |size: u32| (FAMILY, size).into_font();
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(plot.title, font(20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80);
    match &plot.shape {
        Shape::Bars(bars) => {
            let top = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0) * 1.1;
            let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
            let mut chart = builder
                .build_cartesian_2d((0..bars.len().max(1)).into_segmented(), 0.0..top)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(plot.x_label)
                .y_desc(plot.y_label)
                .label_style(font(13))
                .axis_desc_style(font(14))
                .y_label_formatter(&|y| compact(*y))
                .x_label_formatter(&|x| match x {
                    SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                })
                .draw()
                .map_err(|e| err(&e))?;
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 0.0),
                            (SegmentValue::Exact(i + 1), *v),
                        ],
                        RGBColor(52, 101, 164).filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    bar
                }))
                .map_err(|e| err(&e))?;
        }
        Shape::Line(points) => {
            let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
            for (x, y) in points {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
                y1 = y1.max(*y);
            }
            if points.is_empty() {
                (x0, x1) = (0.0, 1.0);
            }
            if x1 <= x0 {
                x1 = x0 + 1.0;
            }
            let mut chart = builder
                .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.05).max(1e-9))
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .x_desc(plot.x_label)
                .y_desc(plot.y_label)
                .label_style(font(13))
                .axis_desc_style(font(14))
                .x_label_formatter(&|x| compact(*x))
                .y_label_formatter(&|y| compact(*y))
                .draw()
                .map_err(|e| err(&e))?;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    RGBColor(52, 101, 164).stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

/// The HTML report: the summary, then every plot inline (SVG, so the page stands alone) with
/// links to its SVG and PNG files.
fn html_page(
    report: &Report,
    timing: &Timing,
    plots: &[Plot],
    dir: &Path,
) -> Result<String, PlotError> {
    let mut figures = String::new();
    for plot in plots {
        let path = dir.join(format!("{}.svg", plot.stem));
        let svg =
            std::fs::read_to_string(&path).map_err(|source| PlotError::Io { path, source })?;
        let svg = svg.trim_start_matches(|c| c != '<');
        let svg = svg.strip_prefix("<?xml").map_or(svg, |rest| {
            rest.split_once("?>").map_or(rest, |(_, after)| after)
        });
        figures.push_str(&format!(
            "<figure>{svg}<figcaption>{title} (<a href=\"{stem}.svg\">SVG</a>, \
             <a href=\"{stem}.png\">PNG</a>)</figcaption></figure>\n",
            title = escape(plot.title),
            stem = plot.stem,
        ));
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>hoplite-sim report, seed {seed}</title>\
         <style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         pre{{background:#f6f8fa;padding:1rem;overflow-x:auto}}figure{{margin:2rem 0}}\
         svg{{max-width:100%;height:auto}}</style></head><body>\n\
         <h1>hoplite-sim report</h1>\n<p>{nodes} nodes, {channels} channels, seed {seed}. \
         Results: <a href=\"results.json\">results.json</a>, timing: \
         <a href=\"timing.json\">timing.json</a>.</p>\n<h2>Summary</h2>\n<pre>{summary}</pre>\n\
         <h2>Plots</h2>\n{figures}</body></html>\n",
        seed = report.seed,
        nodes = report.nodes,
        channels = report.channels,
        summary = escape(&report.summary(timing)),
    ))
}

/// A short axis label: 1.5k, 20M; small values with at most two decimals.
fn compact(value: f64) -> String {
    let a = value.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (value / 1e9, "G")
    } else if a >= 1e6 {
        (value / 1e6, "M")
    } else if a >= 1e4 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
