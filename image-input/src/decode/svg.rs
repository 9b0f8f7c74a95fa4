//! SVG: recognised by its start (it has no magic number) or its name, rasterised with resvg.

use std::sync::{Arc, OnceLock};

use image::RgbImage;

use super::{DecodeOptions, DecodedImage, FailureKind, Frame, ImageFailure};

/// Whether `bytes` (named with `extension`, if any) are an SVG.
pub fn looks_like_svg(bytes: &[u8], extension: Option<&str>) -> bool {
    let ext = extension.map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("svg" | "svgz")) {
        return true;
    }
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<svg") || (t.starts_with("<?xml") && text.contains("<svg"))
}

fn fontdb() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_system_fonts();
        Arc::new(db)
    })
    .clone()
}

/// Rasterises an SVG so its short side is `opts.svg_short_side` px (long side at most 4096).
pub fn render(bytes: &[u8], opts: &DecodeOptions) -> Result<DecodedImage, ImageFailure> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        resources_dir: None,
        fontdb: fontdb(),
        image_href_resolver: usvg::ImageHrefResolver {
            // data: URLs are part of the image; paths and URLs are never followed
            resolve_data: usvg::ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..Default::default()
    };
    let tree = usvg::Tree::from_data(bytes, &options)
        .map_err(|e| ImageFailure::new(FailureKind::Corrupt, format!("SVG: {e}")))?;
    let size = tree.size();
    let (sw, sh) = (size.width(), size.height());
    let scale = (opts.svg_short_side as f32 / sw.min(sh)).min(4096.0 / sw.max(sh));
    let (w, h) = ((sw * scale).round().max(1.0) as u32, (sh * scale).round().max(1.0) as u32);
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| ImageFailure::new(FailureKind::Corrupt, format!("SVG: cannot render at {w}x{h}")))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    // premultiplied RGBA over white: c + (255 - a)
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for px in pixmap.data().chunks_exact(4) {
        let bg = 255 - px[3];
        out.extend(px[..3].iter().map(|c| c.saturating_add(bg)));
    }
    let rgb = RgbImage::from_raw(w, h, out).expect("buffer sized for w x h RGB");
    Ok(DecodedImage { rgb, width: sw.round() as u32, height: sh.round() as u32, frame: Frame::whole(w, h) })
}
