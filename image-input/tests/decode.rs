//! Decoder edge cases that need crafted bytes.

use image_input::decode::{decode_bytes, jpeg_truncated, DecodeOptions, FailureKind};

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
    out
}

#[test]
fn decompression_bomb_is_refused_before_allocation() {
    // a 100,000 x 100,000 RGB PNG header: 30 GB of pixels if decoded
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    let err = decode_bytes(&png, Some("png"), &DecodeOptions::default()).unwrap_err();
    assert_eq!(err.kind, FailureKind::TooLarge, "{err:?}");
    assert!(err.message.contains("100000x100000"), "{}", err.message);
}

#[test]
fn jpeg_truncation_detection() {
    let mut buf = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(32, 32, image::Rgb([1, 2, 3]))
        .write_to(&mut buf, image::ImageFormat::Jpeg)
        .unwrap();
    let jpg = buf.into_inner();
    assert!(!jpeg_truncated(&jpg));
    let mut trailer = jpg.clone();
    trailer.extend_from_slice(b"camera trailer after EOI");
    assert!(!jpeg_truncated(&trailer));
    assert!(jpeg_truncated(&jpg[..jpg.len() - 10]));
    let err = decode_bytes(&jpg[..jpg.len() - 10], Some("jpg"), &DecodeOptions::default()).unwrap_err();
    assert_eq!(err.kind, FailureKind::Corrupt);
}

#[test]
fn svg_external_references_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let red = dir.path().join("red.png");
    image::RgbImage::from_pixel(10, 10, image::Rgb([255, 0, 0])).save(&red).unwrap();
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">
        <image width="10" height="10" xlink:href="{}"/></svg>"#,
        red.display()
    );
    let img = decode_bytes(svg.as_bytes(), Some("svg"), &DecodeOptions::default()).unwrap();
    assert!(img.rgb.pixels().all(|p| p.0 == [255, 255, 255]), "the referenced file was read");
    let inline = r##"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="#00ff00"/></svg>"##;
    let img = decode_bytes(inline.as_bytes(), Some("svg"), &DecodeOptions::default()).unwrap();
    assert_eq!(img.rgb.get_pixel(200, 200).0, [0, 255, 0]);
    assert_eq!((img.width, img.height), (10, 10));
}

#[test]
fn avif_and_heic_are_unsupported_not_corrupt() {
    // the first bytes of an AVIF and of an iPhone HEIC file (file type box, then a meta box)
    let avif = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf\x00\x00\x00\x08meta";
    let heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic\x00\x00\x00\x08meta";
    for (bytes, name) in [(&avif[..], "AVIF"), (&heic[..], "HEIF/HEIC")] {
        let err = decode_bytes(bytes, Some("jpg"), &DecodeOptions::default()).unwrap_err();
        assert_eq!(err.kind, FailureKind::UnsupportedFormat, "{name}: {err:?}");
        assert!(err.message.starts_with(name), "{}", err.message);
        assert_eq!(err.kind.as_str(), "unsupported-format");
    }
    let err = decode_bytes(b"just some text\n", None, &DecodeOptions::default()).unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAnImage);
}
