//! Image formats recognised by their magic numbers but not decoded by this build, so that they
//! are recorded as `unsupported-format` rather than as corrupt files or non-images.

/// The formats [`unsupported_format`] recognises.
pub const UNSUPPORTED_FORMATS: [&str; 9] =
    ["AVIF", "HEIF/HEIC", "JPEG XL", "JPEG 2000", "Photoshop PSD", "DjVu", "OpenEXR", "Radiance HDR", "QOI"];

/// The name of the format of `bytes` if it is an image format this build does not decode.
pub fn unsupported_format(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    // ISO base media file format: a box of type `ftyp`, then the major brand
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        // the major brand, then (after a version) the compatible brands
        let mut brands = vec![&bytes[8..12]];
        let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let end = box_len.min(bytes.len()).min(64);
        brands.extend((16..end).step_by(4).filter(|&i| i + 4 <= end).map(|i| &bytes[i..i + 4]));
        if brands.iter().any(|b| matches!(*b, b"avif" | b"avis")) {
            return Some("AVIF");
        }
        if brands.iter().any(|b| {
            matches!(*b, b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1")
        }) {
            return Some("HEIF/HEIC");
        }
        return None;
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\x00\x00\x00\x0cJXL \r\n\x87\n") {
        return Some("JPEG XL");
    }
    if starts(b"\x00\x00\x00\x0cjP  \r\n\x87\n") || starts(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Some("JPEG 2000");
    }
    if starts(b"8BPS") {
        return Some("Photoshop PSD");
    }
    if starts(b"AT&TFORM") {
        return Some("DjVu");
    }
    if starts(&[0x76, 0x2F, 0x31, 0x01]) {
        return Some("OpenEXR");
    }
    if starts(b"#?RADIANCE") || starts(b"#?RGBE") {
        return Some("Radiance HDR");
    }
    if starts(b"qoif") {
        return Some("QOI");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut body = b"ftyp".to_vec();
        body.extend_from_slice(major);
        body.extend_from_slice(&[0, 0, 0, 0]);
        for c in compatible {
            body.extend_from_slice(*c);
        }
        let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend(body);
        out.extend_from_slice(b"\x00\x00\x00\x08meta");
        out
    }

    #[test]
    fn recognises_modern_formats_by_their_boxes() {
        assert_eq!(unsupported_format(&ftyp(b"avif", &[b"mif1", b"miaf"])), Some("AVIF"));
        assert_eq!(unsupported_format(&ftyp(b"heic", &[b"mif1"])), Some("HEIF/HEIC"));
        // an iPhone file: major brand mif1, compatible heic
        assert_eq!(unsupported_format(&ftyp(b"mif1", &[b"heic"])), Some("HEIF/HEIC"));
        // an MP4 video is a file type box too, but no image format
        assert_eq!(unsupported_format(&ftyp(b"isom", &[b"mp41"])), None);
        assert_eq!(unsupported_format(b"\xff\x0a\x00"), Some("JPEG XL"));
        assert_eq!(unsupported_format(b"\x00\x00\x00\x0cjP  \r\n\x87\n\x00"), Some("JPEG 2000"));
        assert_eq!(unsupported_format(b"\xff\xd8\xff\xe0"), None, "JPEG is decoded");
        assert_eq!(unsupported_format(b"\x89PNG\r\n\x1a\n"), None, "PNG is decoded");
        assert_eq!(unsupported_format(b""), None);
    }
}
