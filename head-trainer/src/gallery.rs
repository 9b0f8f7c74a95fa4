//! `report.html`: an error gallery per run. For every label, at the run's tuned (F1-optimal)
//! threshold: the test images the head is surest of (top true positives), the ones it flags most
//! wrongly (top false positives) and the positives it misses worst (lowest-scored false
//! negatives) — each a thumbnail with its id, score and true labels, beside the label's metrics.
//! Opened from disk, no server; thumbnails are small JPEGs in `gallery/` of the run directory.
//!
//! Selection streams over the test predictions keeping the top `N` per label and kind, so an
//! 11.5M-image test split costs memory in `N`, not in images. An image is found again through
//! the origin its cache recorded (a file, a Parquet row, a tar member), or through an input given
//! with `--images` for caches written before origins were recorded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use feature_cache::atomic::write_atomic;
use feature_cache::{EmbeddingCache, Progress, Silent};
use image_input::thumbnail::thumbnail;
use image_input::{Catalog, InputOptions, SourceImage};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::evaluate::LabelMetrics;

/// Where the images of a run's test split are found.
#[derive(Debug, Clone)]
pub enum ImageSources {
    /// The origins recorded in this cache (format 2).
    Cache(PathBuf),
    /// Any input the extractor reads, looked up by id.
    Input {
        /// The input argument.
        input: String,
        /// How to read it.
        options: InputOptions,
    },
}

/// How a gallery is made.
#[derive(Debug, Clone)]
pub struct GalleryOptions {
    /// Images per label and kind (0: no gallery).
    pub per_label: usize,
    /// Longer side of a thumbnail in pixels.
    pub thumbnail_px: u32,
    /// Where the images are.
    pub images: ImageSources,
}

/// Default [`GalleryOptions::per_label`].
pub const DEFAULT_PER_LABEL: usize = 6;

/// A test image picked for a label: its row in the predictions and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Row of the test predictions.
    pub row: usize,
    /// The head's probability for the label.
    pub score: f32,
}

/// The images shown for one label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelPicks {
    /// True positives, highest score first.
    pub top_true: Vec<Pick>,
    /// False positives, highest score first.
    pub top_false: Vec<Pick>,
    /// Missed positives, lowest score first.
    pub missed: Vec<Pick>,
}

/// An f32 ordered totally, ties broken by row so selections do not depend on anything else.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f32, Reverse<usize>);

impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Keeps the `n` largest keys seen.
struct TopN {
    n: usize,
    heap: BinaryHeap<Reverse<Key>>,
}

impl TopN {
    fn new(n: usize) -> Self {
        Self { n, heap: BinaryHeap::with_capacity(n + 1) }
    }

    fn push(&mut self, key: Key) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Reverse(key));
        } else if self.heap.peek().is_some_and(|Reverse(min)| key > *min) {
            self.heap.pop();
            self.heap.push(Reverse(key));
        }
    }

    /// Largest first.
    fn into_sorted(self) -> Vec<Key> {
        let mut v: Vec<Key> = self.heap.into_iter().map(|Reverse(k)| k).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// Picks, in one pass over `rows` predictions (`probs` and `targets` row-major `rows x m`),
/// the top `n` true positives, false positives and missed positives of each label at its
/// `thresholds`.
pub fn select(probs: &[f32], targets: &[bool], m: usize, thresholds: &[f32], n: usize) -> Vec<LabelPicks> {
    let mut heaps: Vec<[TopN; 3]> = (0..m).map(|_| [TopN::new(n), TopN::new(n), TopN::new(n)]).collect();
    for (row, (p, y)) in probs.chunks_exact(m.max(1)).zip(targets.chunks_exact(m.max(1))).enumerate() {
        for j in 0..m {
            let flagged = p[j] >= thresholds[j];
            match (y[j], flagged) {
                (true, true) => heaps[j][0].push(Key(p[j], Reverse(row))),
                (false, true) => heaps[j][1].push(Key(p[j], Reverse(row))),
                // lowest first: keep the largest of the negated scores
                (true, false) => heaps[j][2].push(Key(-p[j], Reverse(row))),
                (false, false) => {}
            }
        }
    }
    heaps
        .into_iter()
        .map(|[tp, fp, missed]| {
            let picks = |h: TopN, negate: bool| -> Vec<Pick> {
                h.into_sorted()
                    .into_iter()
                    .map(|Key(s, Reverse(row))| Pick { row, score: if negate { -s } else { s } })
                    .collect()
            };
            LabelPicks {
                top_true: picks(tp, false),
                top_false: picks(fp, false),
                missed: picks(missed, true),
            }
        })
        .collect()
}

/// What a gallery shows of a run.
pub struct GalleryData<'a> {
    /// Run name.
    pub run: &'a str,
    /// Embedding model identity.
    pub embedding_model: String,
    /// Label names.
    pub labels: &'a [String],
    /// The F1-optimal thresholds tuned on validation.
    pub thresholds: &'a [f32],
    /// Test ids.
    pub ids: &'a [String],
    /// Test probabilities, `ids x labels`.
    pub probs: &'a [f32],
    /// Test targets, `ids x labels`.
    pub targets: &'a [bool],
    /// Per-label test metrics.
    pub metrics: &'a [LabelMetrics],
}

/// The thumbnail file name of an image id.
fn thumb_name(id: &str) -> String {
    format!("{}.jpg", &hex::encode(Sha256::digest(id.as_bytes()))[..16])
}

/// Writes `report.html` and `gallery/` into `dir`; returns how many thumbnails it made. Images
/// that cannot be found or decoded are shown as such, never fatal.
pub fn write_gallery(
    dir: &Path,
    data: &GalleryData<'_>,
    options: &GalleryOptions,
    progress: &dyn Progress,
) -> Result<usize> {
    let m = data.labels.len();
    let picks = select(data.probs, data.targets, m, data.thresholds, options.per_label);
    let rows: HashSet<usize> = picks
        .iter()
        .flat_map(|p| p.top_true.iter().chain(&p.top_false).chain(&p.missed))
        .map(|p| p.row)
        .collect();
    let wanted: HashSet<&str> = rows.iter().map(|&r| data.ids[r].as_str()).collect();
    let (thumbs, lookup_note) = make_thumbnails(dir, &wanted, options, progress);
    let html = render(data, &picks, &thumbs, lookup_note.as_deref());
    write_atomic(dir.join("report.html"), html.as_bytes())?;
    Ok(thumbs.values().filter(|t| t.is_ok()).count())
}

/// Finds the images and writes their thumbnails; per id the file name or why there is none,
/// and a note when the images could not be looked up at all.
fn make_thumbnails(
    dir: &Path,
    wanted: &HashSet<&str>,
    options: &GalleryOptions,
    progress: &dyn Progress,
) -> (HashMap<String, std::result::Result<String, String>>, Option<String>) {
    let mut out: HashMap<String, std::result::Result<String, String>> = HashMap::new();
    if wanted.is_empty() {
        return (out, None);
    }
    let catalog = match &options.images {
        ImageSources::Cache(root) => EmbeddingCache::open(root)
            .and_then(|c| c.read_origins(wanted))
            .map_err(|e| e.to_string())
            .and_then(|origins| {
                if origins.is_empty() {
                    return Err(format!(
                        "{} records no image origins (written before cache format 2): rebuild this report with \
                         `head-trainer report {} --images INPUT`",
                        root.display(),
                        dir.display()
                    ));
                }
                Catalog::from_origins(origins.into_iter().collect(), &Silent).map_err(|e| e.to_string())
            }),
        ImageSources::Input { input, options } => Catalog::select(input, options, wanted, &Silent).map_err(|e| e.to_string()),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(note) => return (out, Some(note)),
    };
    for r in &catalog.rejected {
        out.insert(r.id.clone(), Err(r.failure.message.clone()));
    }
    let gallery = dir.join("gallery");
    if let Err(e) = std::fs::create_dir_all(&gallery) {
        return (out, Some(format!("{}: {e}", gallery.display())));
    }
    progress.start("thumbnails", catalog.entries.len() as u64, "images");
    let make = |mut img: SourceImage| -> (String, std::result::Result<String, String>) {
        let result = img
            .take_bytes()
            .and_then(|b| thumbnail(&b, img.extension.as_deref(), options.thumbnail_px))
            .map_err(|f| format!("{}: {}", f.kind.as_str(), f.message))
            .and_then(|jpg| {
                let name = thumb_name(&img.id);
                write_atomic(gallery.join(&name), &jpg).map(|_| name).map_err(|e| e.to_string())
            });
        progress.advance(1);
        (img.id, result)
    };
    // a few images at a time: originals may be large, and Parquet rows arrive with their bytes
    let mut batch: Vec<SourceImage> = Vec::new();
    let flush = |batch: &mut Vec<SourceImage>, out: &mut HashMap<_, _>| {
        let done: Vec<_> = std::mem::take(batch).into_par_iter().map(make).collect();
        out.extend(done);
    };
    let streamed = catalog.stream(|img| {
        batch.push(img);
        if batch.len() >= 4 * rayon::current_num_threads() {
            flush(&mut batch, &mut out);
        }
        true
    });
    flush(&mut batch, &mut out);
    let note = streamed.err().map(|e| format!("reading the images stopped: {e}"));
    (out, note)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.3}"))
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222}\
h1{margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #ccc}h3{font-size:15px;margin:14px 0 6px}\
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}\
td:first-child,th:first-child{text-align:left}.m{color:#444;font-size:14px}\
.strip{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:170px;font-size:11px}\
figure img{max-width:160px;max-height:160px;display:block;border:1px solid #ccc}\
.none{width:160px;height:90px;border:1px dashed #bbb;color:#777;display:flex;align-items:center;\
justify-content:center;text-align:center;padding:4px;box-sizing:border-box}\
figcaption{word-break:break-all;margin-top:3px}.empty{color:#777;font-style:italic;font-size:13px}\
.note{background:#fff4d6;padding:8px;border:1px solid #e6c200}";

/// The page.
fn render(
    data: &GalleryData<'_>,
    picks: &[LabelPicks],
    thumbs: &HashMap<String, std::result::Result<String, String>>,
    note: Option<&str>,
) -> String {
    let m = data.labels.len();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — error gallery</title>\
         <style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<p class=\"m\">Embeddings <code>{}</code>; {} labels; {} test \
         images. For each label at its F1-optimal threshold (tuned on validation): the test images scored highest \
         among its positives, the highest-scored among its negatives (false positives), and its positives scored \
         lowest (missed). Plots: <a href=\"roc.png\">ROC</a>, <a href=\"pr.png\">precision-recall</a>, \
         <a href=\"training.png\">training</a>; tables: <a href=\"report.md\">report.md</a>.</p>\n",
        esc(data.run),
        esc(data.run),
        esc(&data.embedding_model),
        m,
        data.ids.len()
    );
    if let Some(note) = note {
        let _ = writeln!(h, "<p class=\"note\">Images are not shown: {}</p>", esc(note));
    }
    h.push_str("<table><tr><th>label</th><th>support</th><th>precision</th><th>recall</th><th>F1</th><th>ROC AUC</th><th>PR AUC</th><th>threshold</th></tr>\n");
    for (j, l) in data.metrics.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#label-{j}\">{}</a></td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
            esc(&l.label),
            l.support,
            l.at_f1.precision,
            esc(&l.at_f1.recall_fraction),
            l.at_f1.f1,
            fmt(l.roc_auc),
            fmt(l.pr_auc),
            data.thresholds[j]
        );
    }
    h.push_str("</table>\n");
    for (j, (label, p)) in data.labels.iter().zip(picks).enumerate() {
        let l = &data.metrics[j];
        let _ = writeln!(
            h,
            "<section id=\"label-{j}\"><h2>{}</h2><p class=\"m\">{} positives in test · threshold {:.3} · precision {:.3} · \
             recall {} · F1 {:.3} · ROC AUC {} · PR AUC {}</p>",
            esc(label),
            l.support,
            data.thresholds[j],
            l.at_f1.precision,
            esc(&l.at_f1.recall_fraction),
            l.at_f1.f1,
            fmt(l.roc_auc),
            fmt(l.pr_auc)
        );
        for (title, list) in [
            ("Surest true positives", &p.top_true),
            ("Top false positives", &p.top_false),
            ("Missed positives, lowest scores first", &p.missed),
        ] {
            let _ = writeln!(h, "<h3>{title}</h3><div class=\"strip\">");
            if list.is_empty() {
                h.push_str("<p class=\"empty\">none</p>");
            }
            for pick in list {
                let id = &data.ids[pick.row];
                let y = &data.targets[pick.row * m..(pick.row + 1) * m];
                let truth: Vec<&str> =
                    data.labels.iter().zip(y).filter(|(_, &t)| t).map(|(name, _)| name.as_str()).collect();
                let picture = match thumbs.get(id) {
                    Some(Ok(file)) => format!("<img src=\"gallery/{file}\" alt=\"{}\">", esc(id)),
                    Some(Err(why)) => format!("<div class=\"none\">not shown: {}</div>", esc(why)),
                    None => "<div class=\"none\">not shown</div>".to_string(),
                };
                let _ = writeln!(
                    h,
                    "<figure>{picture}<figcaption><b>{:.3}</b> {}<br>labels: {}</figcaption></figure>",
                    pick.score,
                    esc(id),
                    if truth.is_empty() { "none".to_string() } else { esc(&truth.join(", ")) }
                );
            }
            h.push_str("</div>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_the_top_n_of_each_kind_in_one_pass() {
        // 6 rows, 1 label, threshold 0.5
        let probs = [0.9, 0.8, 0.7, 0.3, 0.2, 0.6];
        let targets = [true, false, true, true, true, false];
        let p = &select(&probs, &targets, 1, &[0.5], 2)[0];
        assert_eq!(p.top_true, [Pick { row: 0, score: 0.9 }, Pick { row: 2, score: 0.7 }]);
        assert_eq!(p.top_false, [Pick { row: 1, score: 0.8 }, Pick { row: 5, score: 0.6 }]);
        assert_eq!(p.missed, [Pick { row: 4, score: 0.2 }, Pick { row: 3, score: 0.3 }]);
        assert_eq!(select(&probs, &targets, 1, &[0.5], 0)[0], LabelPicks::default());
    }

    #[test]
    fn ties_are_broken_by_row_so_a_selection_is_reproducible() {
        let probs = [0.5f32; 5];
        let targets = [true; 5];
        let p = &select(&probs, &targets, 1, &[0.1], 3)[0];
        assert_eq!(p.top_true.iter().map(|p| p.row).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(thumb_name("a"), "ca978112ca1bbdca.jpg");
    }
}
