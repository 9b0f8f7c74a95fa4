//! Small JPEG thumbnails of images, for reports (never the originals, which may be 50 MB TIFFs
//! or rows of a Parquet shard).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

use crate::decode::{decode_bytes, DecodeOptions, FailureKind, ImageFailure};

/// A JPEG of the image in `bytes` whose longer side is at most `max_side` pixels (JPEGs are
/// decoded at a reduced scale where that suffices); `extension` hints at SVG.
pub fn thumbnail(bytes: &[u8], extension: Option<&str>, max_side: u32) -> Result<Vec<u8>, ImageFailure> {
    let opts = DecodeOptions {
        jpeg_min_short_side: Some(max_side),
        svg_short_side: max_side,
        ..DecodeOptions::default()
    };
    let img = decode_bytes(bytes, extension, &opts)?.rgb;
    let (w, h) = img.dimensions();
    let scale = (max_side as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let small =
        if (tw, th) == (w, h) { img } else { image::imageops::resize(&img, tw, th, FilterType::Triangle) };
    let mut out = Cursor::new(Vec::new());
    JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&small)
        .map_err(|e| ImageFailure::new(FailureKind::Preprocess, format!("thumbnail: {e}")))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_fit_the_box_and_are_jpegs() {
        let mut png = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(400, 100, image::Rgb([10, 200, 30]))
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let jpg = thumbnail(png.get_ref(), Some("png"), 120).unwrap();
        let t = image::load_from_memory(&jpg).unwrap();
        assert_eq!((t.width(), t.height()), (120, 30));
        assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
        assert_eq!(thumbnail(b"", None, 120).unwrap_err().kind, FailureKind::Empty);
    }
}
