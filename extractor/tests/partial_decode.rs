//! Decoding only the region a centre crop reads (and at the DCT scale the draft margin allows)
//! gives the network exactly the input a whole decode gives, for every JPEG layout and EXIF
//! orientation; and the JPEG decoder's pixels agree with an independent decoder's.

use extractor::job::Preparation;
use extractor::model::ResizePolicy;
use image::metadata::Orientation;
use image_input::decode::DEFAULT_MAX_PIXELS;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// A photo-like test card: smooth gradients, sharp edges and per-pixel noise (a fixed hash),
/// so resampling differences at any scale show.
fn card(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791))
                .wrapping_mul(2_654_435_761)
                >> 27;
            let edge = if (x / 37 + y / 23) % 2 == 0 { 60 } else { 0 };
            let r = (x * 255 / w) as i32 + edge + n as i32;
            let g = (y * 255 / h) as i32 - edge + n as i32;
            let b = (((x + y) * 3) % 256) as i32;
            px.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    px
}

/// An EXIF APP1 body (after `Exif\0\0` is added by the caller) holding only an orientation.
fn exif_orientation(o: Orientation) -> Vec<u8> {
    let mut t = b"Exif\0\0MM\0*\0\0\0\x08\0\x01".to_vec();
    t.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1]);
    t.extend_from_slice(&[0, o.to_exif(), 0, 0]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    t
}

struct Case {
    w: u32,
    h: u32,
    sampling: SamplingFactor,
    grey: bool,
    progressive: bool,
    restart: u16,
    orientation: Orientation,
}

fn encode(c: &Case, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, 88);
    enc.set_sampling_factor(c.sampling);
    enc.set_progressive(c.progressive);
    if c.restart > 0 {
        enc.set_restart_interval(c.restart);
    }
    enc.add_app_segment(1, &exif_orientation(c.orientation)).unwrap();
    let rgb = card(c.w, c.h, seed);
    if c.grey {
        let luma: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
        enc.encode(&luma, c.w as u16, c.h as u16, ColorType::Luma).unwrap();
    } else {
        enc.encode(&rgb, c.w as u16, c.h as u16, ColorType::Rgb).unwrap();
    }
    out
}

fn cases() -> Vec<Case> {
    use Orientation::*;
    let orientations = [
        NoTransforms,
        Rotate90,
        Rotate180,
        Rotate270,
        FlipHorizontal,
        FlipVertical,
        Rotate90FlipH,
        Rotate270FlipH,
    ];
    let samplings =
        [SamplingFactor::F_2_2, SamplingFactor::F_1_1, SamplingFactor::F_2_1, SamplingFactor::F_4_1];
    // odd sizes, portrait and landscape, short sides that the margins below reduce 1x to 8x
    let sizes = [(1021, 683), (683, 1021), (640, 427), (333, 500), (2050, 1370), (2053, 2049)];
    let mut out = Vec::new();
    for (i, &(w, h)) in sizes.iter().enumerate() {
        for (j, &sampling) in samplings.iter().enumerate() {
            let k = i * samplings.len() + j;
            out.push(Case {
                w,
                h,
                sampling,
                grey: k % 7 == 3,
                progressive: k % 3 == 1,
                restart: if k % 5 == 2 { 4 } else { 0 },
                orientation: orientations[k % orientations.len()],
            });
        }
    }
    out
}

#[test]
fn a_centre_crop_decoded_in_part_is_the_crop_of_the_whole_decode() {
    let crop = ResizePolicy::CenterCrop { crop_fraction: 0.875 };
    let mut reduced = [0usize; 4];
    for (n, case) in cases().iter().enumerate() {
        let jpeg = encode(case, n as u32);
        // margins from "never reduce" to "reduce as far as the crop allows"
        for margin in [0.0, 1.0, 2.0] {
            let part = Preparation::new(crop, 224, DEFAULT_MAX_PIXELS, margin);
            let mut whole = part;
            whole.decode.centre_crop = None;
            let (a, aw, ah) = part.network_input(&jpeg, Some("jpg")).unwrap();
            let (b, bw, bh) = whole.network_input(&jpeg, Some("jpg")).unwrap();
            let what = format!(
                "{}x{} {:?} grey={} progressive={} restart={} {:?} margin {margin}",
                case.w, case.h, case.sampling, case.grey, case.progressive, case.restart, case.orientation
            );
            assert_eq!((aw, ah), (bw, bh), "{what}");
            let turned = matches!(
                case.orientation,
                Orientation::Rotate90
                    | Orientation::Rotate270
                    | Orientation::Rotate90FlipH
                    | Orientation::Rotate270FlipH
            );
            assert_eq!((aw, ah), if turned { (case.h, case.w) } else { (case.w, case.h) }, "{what}");
            // the part really was a part
            let decoded = image_input::decode_bytes(&jpeg, Some("jpg"), &part.decode).unwrap();
            let f = decoded.frame;
            assert!(decoded.rgb.width() < f.width && decoded.rgb.height() <= f.height, "{what}: {f:?}");
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(differ, 0, "{what}: {differ} of {} input values differ", a.len());
            if let Some(min) = part.decode.jpeg_min_short_side {
                let r = image_input::decode::jpeg_reduction(case.w, case.h, min);
                reduced[r.trailing_zeros() as usize] += 1;
            }
        }
    }
    // every DCT scale was exercised
    assert!(reduced.iter().all(|&n| n > 0), "reductions 1, 2, 4, 8 used {reduced:?} times");
}

#[test]
fn jpeg_pixels_agree_with_an_independent_decoder() {
    // libjpeg-turbo (or whichever decoder this build uses) against the image crate's zune-jpeg,
    // orientation applied by the image crate: the two differ only by IDCT and upsampling
    // rounding
    for (n, case) in cases().iter().enumerate().step_by(3) {
        let jpeg = encode(case, n as u32);
        let ours = image_input::decode_bytes(&jpeg, Some("jpg"), &Default::default()).unwrap();
        let mut decoder = image::ImageReader::new(std::io::Cursor::new(&jpeg))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        use image::ImageDecoder;
        let orientation = decoder.orientation().unwrap();
        assert_eq!(orientation, case.orientation);
        let mut theirs = image::DynamicImage::from_decoder(decoder).unwrap();
        theirs.apply_orientation(orientation);
        let theirs = theirs.into_rgb8();
        assert_eq!(ours.rgb.dimensions(), theirs.dimensions(), "case {n}");
        let diffs: Vec<i32> = ours
            .rgb
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .collect();
        let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
        let big = diffs.iter().filter(|&&d| d > 8).count() as f64 / diffs.len() as f64;
        assert!(mean < 1.0 && big < 0.002, "case {n}: mean |difference| {mean:.3}, share > 8: {big:.5}");
    }
}
