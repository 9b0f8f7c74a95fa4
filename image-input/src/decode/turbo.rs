//! libjpeg-turbo through its TurboJPEG 3 API, built from the source that `turbojpeg-sys` bundles
//! (SIMD required, linked statically: nothing to install on a compute node): JPEG decoding with
//! DCT-domain scaling and partial decoding of a region.
//!
//! Our own thin wrapper over `turbojpeg-sys` rather than the `turbojpeg` crate, because that
//! crate does not expose the cropping region (`tj3SetCroppingRegion`), which is what lets a
//! centre crop skip the inverse DCT, upsampling and colour conversion of the columns and rows
//! it does not use.

use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr::NonNull;

use turbojpeg_sys as tj;

/// A JPEG's header as libjpeg-turbo reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Stored width (before any EXIF orientation).
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// Width of an MCU at full scale (8, 16 or 32 px), `None` for a sampling libjpeg-turbo
    /// cannot crop at.
    mcu_width: Option<u32>,
    /// Whether this is a JPEG libjpeg-turbo decodes to 8-bit RGB with scaling: 8-bit lossy,
    /// YCbCr, RGB or greyscale (CMYK and YCCK, 12-bit and lossless JPEGs are left to the
    /// general decoder).
    pub scalable_rgb: bool,
}

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// Pixels decoded by [`decode`]: `region` of the image scaled to `scaled_width x scaled_height`.
#[derive(Debug)]
pub struct Decoded {
    /// RGB, `region.w * region.h * 3` bytes.
    pub rgb: Vec<u8>,
    /// The part of the scaled image the pixels hold.
    pub region: Rect,
    /// Width of the whole image at the decoding scale.
    pub scaled_width: u32,
    /// Height of the whole image at the decoding scale.
    pub scaled_height: u32,
}

struct Handle(NonNull<libc::c_void>);

impl Handle {
    fn new() -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; a null result is handled.
        let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        NonNull::new(raw).map(Handle).ok_or_else(|| "libjpeg-turbo: cannot create a decompressor".into())
    }

    fn ptr(&self) -> tj::tjhandle {
        self.0.as_ptr()
    }

    fn error(&self) -> String {
        // SAFETY: the handle is live; the string is owned by it and copied at once.
        let msg = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.ptr())) };
        format!("libjpeg-turbo: {}", msg.to_string_lossy())
    }

    fn check(&self, status: libc::c_int) -> Result<(), String> {
        if status == 0 {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn get(&self, param: tj::TJPARAM) -> libc::c_int {
        // SAFETY: the handle is live; unknown parameters return -1.
        unsafe { tj::tj3Get(self.ptr(), param as libc::c_int) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.ptr()) }
    }
}

thread_local! {
    /// One decompressor per thread, made on first use and reused for every image.
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

fn with_handle<T>(f: impl FnOnce(&Handle) -> Result<T, String>) -> Result<T, String> {
    HANDLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Handle::new()?);
        }
        f(slot.as_ref().expect("made above"))
    })
}

fn read_header(handle: &Handle, jpeg: &[u8]) -> Result<Header, String> {
    // SAFETY: the pointer and length describe a live slice.
    handle.check(unsafe { tj::tj3DecompressHeader(handle.ptr(), jpeg.as_ptr(), jpeg.len() as _) })?;
    let dim = |p| u32::try_from(handle.get(p)).map_err(|_| "libjpeg-turbo: bad image size".to_string());
    let (width, height) = (dim(tj::TJPARAM_TJPARAM_JPEGWIDTH)?, dim(tj::TJPARAM_TJPARAM_JPEGHEIGHT)?);
    let mcu_width = match handle.get(tj::TJPARAM_TJPARAM_SUBSAMP) {
        tj::TJSAMP_TJSAMP_444 | tj::TJSAMP_TJSAMP_GRAY | tj::TJSAMP_TJSAMP_440 | tj::TJSAMP_TJSAMP_441 => {
            Some(8)
        }
        tj::TJSAMP_TJSAMP_422 | tj::TJSAMP_TJSAMP_420 => Some(16),
        tj::TJSAMP_TJSAMP_411 => Some(32),
        _ => None,
    };
    let colorspace = handle.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    let rgb_like = [tj::TJCS_TJCS_RGB, tj::TJCS_TJCS_YCbCr, tj::TJCS_TJCS_GRAY].map(|c| c as libc::c_int);
    let scalable_rgb = handle.get(tj::TJPARAM_TJPARAM_PRECISION) == 8
        && handle.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 0
        && rgb_like.contains(&colorspace);
    Ok(Header { width, height, mcu_width, scalable_rgb })
}

/// Reads the header of a JPEG.
pub fn header(jpeg: &[u8]) -> Result<Header, String> {
    with_handle(|h| read_header(h, jpeg))
}

/// `dim` at `1/reduction` scale, rounded up as libjpeg-turbo does (`TJSCALED`).
pub fn scaled(dim: u32, reduction: u32) -> u32 {
    dim.div_ceil(reduction)
}

/// Decodes a JPEG whose header is `header` to 8-bit RGB at `1/reduction` scale (1, 2, 4 or 8).
/// `want` is the part of the scaled image the caller needs (`None`: all of it); the region
/// decoded covers it, widened on the left to the MCU boundary libjpeg-turbo starts at. Any
/// error or warning (corrupt data, a premature end) is an `Err`: the caller decides what
/// else to try.
pub fn decode(jpeg: &[u8], header: &Header, reduction: u32, want: Option<Rect>) -> Result<Decoded, String> {
    debug_assert!(matches!(reduction, 1 | 2 | 4 | 8));
    let (sw, sh) = (scaled(header.width, reduction), scaled(header.height, reduction));
    let region = match (want, header.mcu_width) {
        (Some(r), Some(mcu)) if r.w > 0 && r.h > 0 && r.x + r.w <= sw && r.y + r.h <= sh => {
            let step = scaled(mcu, reduction);
            let x = r.x / step * step;
            Rect { x, y: r.y, w: r.x + r.w - x, h: r.h }
        }
        _ => Rect { x: 0, y: 0, w: sw, h: sh },
    };
    let whole = region == Rect { x: 0, y: 0, w: sw, h: sh };
    with_handle(|h| {
        // reading the header on this handle sets the image the scaling and region refer to
        if read_header(h, jpeg)? != *header {
            return Err("libjpeg-turbo: the header given is not this JPEG's".into());
        }
        let factor = tj::tjscalingfactor { num: 1, denom: reduction as libc::c_int };
        // SAFETY: live handle; the factor is one libjpeg-turbo supports (1/1, 1/2, 1/4, 1/8).
        h.check(unsafe { tj::tj3SetScalingFactor(h.ptr(), factor) })?;
        let crop = if whole {
            tj::tjregion { x: 0, y: 0, w: 0, h: 0 } // TJUNCROPPED
        } else {
            let c = |v: u32| v as libc::c_int;
            tj::tjregion { x: c(region.x), y: c(region.y), w: c(region.w), h: c(region.h) }
        };
        // SAFETY: live handle; the region lies inside the scaled image, its left edge on an MCU.
        h.check(unsafe { tj::tj3SetCroppingRegion(h.ptr(), crop) })?;
        let len = region.w as usize * region.h as usize * 3;
        let mut rgb: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: `rgb` has room for region.w x region.h packed RGB pixels (pitch 0 = packed),
        // which is exactly what tj3Decompress8 writes for this scaling factor and region.
        let status = unsafe {
            tj::tj3Decompress8(
                h.ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                rgb.as_mut_ptr(),
                0,
                tj::TJPF_TJPF_RGB as libc::c_int,
            )
        };
        h.check(status)?;
        // SAFETY: success means every byte of the region was written.
        unsafe { rgb.set_len(len) };
        Ok(Decoded { rgb, region, scaled_width: sw, scaled_height: sh })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn reads_the_header_and_decodes_at_each_scale() {
        let bytes = jpeg(203, 97);
        let head = header(&bytes).unwrap();
        assert_eq!((head.width, head.height), (203, 97));
        assert!(head.scalable_rgb);
        for (r, w, h) in [(1, 203, 97), (2, 102, 49), (4, 51, 25), (8, 26, 13)] {
            let d = decode(&bytes, &head, r, None).unwrap();
            assert_eq!((d.scaled_width, d.scaled_height, d.region.w, d.region.h), (w, h, w, h), "1/{r}");
            assert_eq!(d.rgb.len(), (w * h * 3) as usize);
        }
    }

    #[test]
    fn a_region_starts_on_an_mcu_and_matches_the_whole_decode() {
        let bytes = jpeg(300, 200);
        let head = header(&bytes).unwrap();
        let whole = decode(&bytes, &head, 1, None).unwrap();
        let want = Rect { x: 37, y: 21, w: 150, h: 120 };
        let part = decode(&bytes, &head, 1, Some(want)).unwrap();
        // the image crate writes 4:2:0: 16 px MCUs
        assert_eq!(part.region, Rect { x: 32, y: 21, w: 155, h: 120 });
        // rows and columns away from the region's edges are the same pixels
        for y in 2..part.region.h - 2 {
            for x in 2..part.region.w - 2 {
                let p = ((y * part.region.w + x) * 3) as usize;
                let q = (((y + part.region.y) * 300 + x + part.region.x) * 3) as usize;
                assert_eq!(part.rgb[p..p + 3], whole.rgb[q..q + 3], "at {x},{y}");
            }
        }
    }

    #[test]
    fn damage_is_an_error_not_a_crash() {
        let bytes = jpeg(64, 64);
        let head = header(&bytes).unwrap();
        let cut = &bytes[..bytes.len() / 2];
        assert!(decode(cut, &head, 1, None).is_err());
        assert!(header(b"not a jpeg").is_err());
    }
}
