//! Image -> network input: crop and resize to a square of uint8 RGB (HWC), as the model manifest
//! prescribes. Normalisation happens inside the ONNX graph.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use image_input::decode::Frame;

use crate::model::ResizePolicy;

/// The crop box `(left, top, width, height)` a policy takes from a `w x h` image.
pub fn crop_box(policy: ResizePolicy, w: u32, h: u32) -> (f64, f64, f64, f64) {
    let (w, h) = (f64::from(w), f64::from(h));
    match policy {
        ResizePolicy::CenterCrop { crop_fraction } => {
            let c = w.min(h) * crop_fraction;
            ((w - c) / 2.0, (h - c) / 2.0, c, c)
        }
        ResizePolicy::Stretch => (0.0, 0.0, w, h),
    }
}

/// Writes the `size x size x 3` network input for `img` into `out` (which it resizes): the
/// policy's box of the picture `frame` describes, of which `img` holds the part at
/// `frame.left, frame.top` (the whole picture, or the region a decoder was asked for).
/// Bilinear with antialiasing (a convolution whose support grows with the scale factor), as
/// Pillow's `Image.resize(..., BILINEAR, box=...)`. Fails, with the reason, on an image the
/// resizer cannot take (e.g. zero pixels wide).
pub fn preprocess_into(
    img: &RgbImage,
    frame: Frame,
    policy: ResizePolicy,
    size: u32,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || size == 0 {
        return Err(format!("cannot resize a {w}x{h} image to {size}x{size}"));
    }
    let (left, top, cw, ch) = crop_box(policy, frame.width, frame.height);
    let (left, top) = (left - f64::from(frame.left), top - f64::from(frame.top));
    if left < 0.0 || top < 0.0 || left + cw > f64::from(w) || top + ch > f64::from(h) {
        return Err(format!(
            "the decoded region {w}x{h} at {},{} does not hold the crop",
            frame.left, frame.top
        ));
    }
    let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3).map_err(|e| format!("image buffer: {e}"))?;
    out.clear();
    out.resize((size * size * 3) as usize, 0);
    let mut dst = Image::from_slice_u8(size, size, out.as_mut_slice(), PixelType::U8x3)
        .map_err(|e| format!("input buffer: {e}"))?;
    let options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(left, top, cw, ch);
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| format!("resize {w}x{h} -> {size}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_images_are_errors_not_panics() {
        let mut out = Vec::new();
        let err =
            preprocess_into(&RgbImage::new(0, 5), Frame::whole(0, 5), ResizePolicy::Stretch, 64, &mut out)
                .unwrap_err();
        assert!(err.contains("0x5"), "{err}");
        // a single pixel is an image: it resizes
        let one = RgbImage::from_pixel(1, 1, image::Rgb([9, 8, 7]));
        let crop = ResizePolicy::CenterCrop { crop_fraction: 0.875 };
        preprocess_into(&one, Frame::whole(1, 1), crop, 64, &mut out).unwrap();
        assert_eq!(out.len(), 64 * 64 * 3);
        assert_eq!(&out[..3], &[9, 8, 7]);
    }
}
