//! WebP through libwebp (feature `libwebp`; built from the source `libwebp-sys` bundles), about
//! twice as fast as the pure-Rust decoder on photos. Straight over `libwebp-sys` rather than
//! the `webp` crate, so the pixels are decoded into our own buffer (no copy out of a
//! libwebp allocation) and the pixel limit is checked before anything is allocated.

use image::{DynamicImage, RgbImage, RgbaImage};
use libwebp_sys as webp;

use super::{check_pixels, DecodeOptions, DecodedImage, Frame, ImageFailure};

/// Decodes a still WebP (alpha composited on white). `Ok(None)` for what it leaves to the
/// general decoder, which then gives its verdict: animations (their first frame) and data
/// libwebp rejects.
pub fn decode(bytes: &[u8], opts: &DecodeOptions) -> Result<Option<DecodedImage>, ImageFailure> {
    // SAFETY: an all-zero WebPBitstreamFeatures is valid (plain integers).
    let mut features: webp::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and length describe a live slice; `features` is written by libwebp.
    let status = unsafe { webp::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    if status != webp::VP8StatusCode::VP8_STATUS_OK || features.has_animation != 0 {
        return Ok(None);
    }
    let (Ok(w), Ok(h)) = (u32::try_from(features.width), u32::try_from(features.height)) else {
        return Ok(None);
    };
    check_pixels(w, h, opts)?;
    let alpha = features.has_alpha != 0;
    let channels = if alpha { 4 } else { 3 };
    let stride = w as usize * channels;
    let len = stride * h as usize;
    let mut pixels: Vec<u8> = Vec::with_capacity(len);
    // SAFETY: `pixels` has room for `len` bytes, which is what libwebp writes for a w x h
    // image at this stride; a null result means it wrote nothing we use.
    let out = unsafe {
        let decode_into = if alpha { webp::WebPDecodeRGBAInto } else { webp::WebPDecodeRGBInto };
        decode_into(bytes.as_ptr(), bytes.len(), pixels.as_mut_ptr(), len, stride as libc::c_int)
    };
    if out.is_null() {
        return Ok(None);
    }
    // SAFETY: success means every byte of the w x h image was written.
    unsafe { pixels.set_len(len) };
    let img = if alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, pixels).expect("w x h RGBA"))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels).expect("w x h RGB"))
    };
    Ok(Some(DecodedImage {
        rgb: super::to_rgb_on_white(img),
        width: w,
        height: h,
        frame: Frame::whole(w, h),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::WebP).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_what_the_pure_rust_decoder_decodes() {
        // the image crate writes lossless WebP: both decoders must give the exact pixels
        let rgb = RgbImage::from_fn(37, 21, |x, y| image::Rgb([(x * 6) as u8, (y * 11) as u8, 200]));
        let got = decode(&encode(DynamicImage::ImageRgb8(rgb.clone())), &DecodeOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(got.rgb, rgb);
        let rgba = RgbaImage::from_fn(5, 4, |x, _| image::Rgba([0, 0, 0, (x * 60) as u8]));
        let got =
            decode(&encode(DynamicImage::ImageRgba8(rgba)), &DecodeOptions::default()).unwrap().unwrap();
        // black at alpha a over white: 255 - a, rounded
        assert_eq!(got.rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(got.rgb.get_pixel(4, 0).0, [15, 15, 15]);
    }

    #[test]
    fn leaves_damage_to_the_general_decoder_and_refuses_bombs() {
        let bytes = encode(DynamicImage::ImageRgb8(RgbImage::new(64, 64)));
        assert!(decode(&bytes[..bytes.len() / 2], &DecodeOptions::default()).unwrap().is_none());
        let small = DecodeOptions { max_pixels: 1000, ..Default::default() };
        let err = decode(&bytes, &small).unwrap_err();
        assert_eq!(err.kind, super::super::FailureKind::TooLarge);
    }
}
