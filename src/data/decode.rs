//! Parallel image decoding into one uint8 NCHW tensor.
//!
//! Every image is read (or taken from memory), decoded (JPEG, PNG, GIF, TIFF, BMP, PGM/PPM),
//! converted to grayscale or RGB, resized to the target size (antialiased bilinear, `resize.rs`)
//! when it differs, optionally
//! flipped horizontally, and written straight into its slot of the output tensor; rayon spreads
//! images over the mfr pool.

use std::path::PathBuf;

use image::DynamicImage;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::index::shown;
use super::resize::resize;
use crate::error::{MfrError, Result};
use crate::limits::{check_memory, product};
use crate::threads;

/// Where one image comes from.
pub enum ImageSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl ImageSource {
    fn describe(&self, i: usize) -> String {
        match self {
            ImageSource::Path(p) => shown(p.as_os_str()),
            ImageSource::Bytes(b) => format!("<in-memory image {i}, {} bytes>", b.len()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DecodeOptions {
    pub height: usize,
    pub width: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Per image, whether to flip it horizontally (empty: none).
    pub flips: Vec<bool>,
    /// Drop unreadable images (reported) instead of failing.
    pub skip_errors: bool,
}

/// The decoded batch and, when skipping, the images that failed (input position, reason).
pub struct Decoded {
    pub images: Tensor,
    pub failed: Vec<(usize, String)>,
}

/// A JPEG cut short: the decoder fills the missing part with grey and reports nothing, so the
/// file is checked for the end-of-image marker (FF D9) after its last start-of-scan (FF DA).
/// Entropy-coded data never holds FF DA or FF D9 (an FF there is followed by 00 or a restart
/// marker), and trailing bytes after the image (camera data) are allowed.
fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        None => false, // no scan at all: the decoder reports that itself
        Some(at) => !bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
    }
}

fn decode_one(source: &ImageSource, i: usize, opts: &DecodeOptions, out: &mut [u8]) -> std::result::Result<(), String> {
    let owned;
    let bytes: &[u8] = match source {
        ImageSource::Path(p) => {
            owned = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", shown(p.as_os_str())))?;
            &owned
        }
        ImageSource::Bytes(b) => b,
    };
    if is_truncated_jpeg(bytes) {
        return Err(format!(
            "cannot decode {}: truncated JPEG (no end-of-image marker after its last scan)",
            source.describe(i)
        ));
    }
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode {}: {e}", source.describe(i)))?;
    place(img, opts.flips.get(i).copied().unwrap_or(false), opts, out);
    Ok(())
}

/// One image to the options' channels and size, optionally mirrored, written into its CHW slot:
/// grayscale as the image crate computes luma, the antialiased resize of `resize.rs`. Decoded
/// files and in-memory images ([`convert_images`]) both go through here, so one picture gives
/// the same pixels either way.
fn place(img: DynamicImage, flip: bool, opts: &DecodeOptions, out: &mut [u8]) {
    let (src_w, src_h) = (img.width() as usize, img.height() as usize);
    // Resize in the source's own channel count: a grayscale source is replicated only at the end.
    let (pixels, c) = if opts.channels == 1 || !img.color().has_color() {
        (img.into_luma8().into_raw(), 1)
    } else {
        (img.into_rgb8().into_raw(), 3)
    };
    let (h, w) = (opts.height, opts.width);
    let pixels = resize(&pixels, src_h, src_w, c, h, w);
    let plane = h * w;
    // HWC (1 or 3 channels) -> CHW with `opts.channels` planes, mirrored when flipping.
    for ch in 0..opts.channels {
        let src_ch = if c == 1 { 0 } else { ch };
        let dst = &mut out[ch * plane..(ch + 1) * plane];
        for (y, drow) in dst.chunks_exact_mut(w).enumerate() {
            let srow = &pixels[y * w * c..(y + 1) * w * c];
            if flip {
                for (x, d) in drow.iter_mut().enumerate() {
                    *d = srow[(w - 1 - x) * c + src_ch];
                }
            } else {
                for (x, d) in drow.iter_mut().enumerate() {
                    *d = srow[x * c + src_ch];
                }
            }
        }
    }
}

/// In-memory uint8 images `(N, C, H, W)` (C = 1 or 3, any device) converted to the options'
/// channels and size exactly as decoded files are (see [`place`]); returns a CPU tensor.
pub fn convert_images(images: &Tensor, opts: &DecodeOptions) -> Result<Tensor> {
    const F: &str = "convert_images";
    let size = images.size();
    if size.len() != 4 || !(size[1] == 1 || size[1] == 3) || images.f_kind()? != Kind::Uint8 {
        return Err(MfrError::invalid(
            F,
            format!(
                "images must be uint8 (N, 1 or 3, H, W), got {} {size:?}",
                crate::tensor_check::kind_name(images.f_kind()?)
            ),
        ));
    }
    check_options(F, opts, size[0] as usize)?;
    let (n, c, h, w) = (size[0] as usize, size[1] as usize, size[2] as u32, size[3] as u32);
    let hwc = images.f_to_device(Device::Cpu)?.f_permute([0, 2, 3, 1])?.f_contiguous()?;
    let src = crate::tensor_check::host_slice::<u8>(F, "images", &hwc)?;
    let per_src = c * (h * w) as usize;
    let per_image = opts.channels * opts.height * opts.width;
    let out = Tensor::f_zeros(
        [n as i64, opts.channels as i64, opts.height as i64, opts.width as i64],
        (Kind::Uint8, Device::Cpu),
    )?;
    if n > 0 {
        // SAFETY: a fresh contiguous uint8 CPU tensor of n * per_image bytes, referenced only here.
        let buffer = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut u8, n * per_image) };
        threads::install(|| {
            buffer.par_chunks_mut(per_image).enumerate().for_each(|(i, slot)| {
                let pixels = src[i * per_src..(i + 1) * per_src].to_vec();
                let img = if c == 1 {
                    DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).expect("sized above"))
                } else {
                    DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).expect("sized above"))
                };
                place(img, opts.flips.get(i).copied().unwrap_or(false), opts, slot);
            })
        })?;
    }
    Ok(out)
}

/// Refuses a batch whose output tensor and per-thread working buffers (decoded source, resized
/// copy) cannot fit in memory, before anything is allocated.
pub fn check_decode_size(func: &str, n: usize, opts: &DecodeOptions) -> Result<()> {
    let per_image = product(&[opts.channels as u128, opts.height as u128, opts.width as u128]);
    let workers = threads::num_threads().min(n.max(1)) as u128;
    let bytes = product(&[per_image, n as u128]) + product(&[per_image, 3, workers]);
    check_memory(func, &format!("{n} images of {}x{}x{}", opts.channels, opts.height, opts.width), bytes)
}

/// Channels 1 or 3, sides in 1..=16384, one flip entry per image (or none), and the memory
/// the batch needs.
fn check_options(func: &str, opts: &DecodeOptions, n: usize) -> Result<()> {
    if opts.channels != 1 && opts.channels != 3 {
        return Err(MfrError::invalid(func, format!("channels must be 1 or 3, got {}", opts.channels)));
    }
    if opts.height == 0 || opts.width == 0 || opts.height > 16384 || opts.width > 16384 {
        return Err(MfrError::invalid(
            func,
            format!("size must be between 1 and 16384 pixels, got ({}, {})", opts.height, opts.width),
        ));
    }
    if !opts.flips.is_empty() && opts.flips.len() != n {
        return Err(MfrError::invalid(
            func,
            format!("flip must have one entry per image ({n}), got {}", opts.flips.len()),
        ));
    }
    check_decode_size(func, n, opts)
}

pub fn decode_images(sources: &[ImageSource], opts: &DecodeOptions) -> Result<Decoded> {
    const F: &str = "decode_images";
    let n = sources.len();
    check_options(F, opts, n)?;
    let per_image = opts.channels * opts.height * opts.width;
    let images = Tensor::f_zeros(
        [n as i64, opts.channels as i64, opts.height as i64, opts.width as i64],
        (Kind::Uint8, Device::Cpu),
    )?;
    let results: Vec<std::result::Result<(), String>> = if n == 0 {
        Vec::new()
    } else {
        // SAFETY: a fresh contiguous uint8 CPU tensor of n * per_image bytes that nothing else
        // references until this function returns it.
        let buffer = unsafe { std::slice::from_raw_parts_mut(images.data_ptr() as *mut u8, n * per_image) };
        threads::install(|| {
            buffer
                .par_chunks_mut(per_image)
                .enumerate()
                .map(|(i, out)| {
                    let r = decode_one(&sources[i], i, opts, out);
                    if r.is_err() {
                        out.fill(0);
                    }
                    r
                })
                .collect()
        })?
    };
    let failed: Vec<(usize, String)> =
        results.into_iter().enumerate().filter_map(|(i, r)| r.err().map(|e| (i, e))).collect();
    if failed.is_empty() {
        return Ok(Decoded { images, failed });
    }
    if !opts.skip_errors {
        let (i, reason) = &failed[0];
        let more = if failed.len() > 1 { format!(" ({} more images failed)", failed.len() - 1) } else { String::new() };
        return Err(MfrError::data(F, format!("image {i}: {reason}{more}")));
    }
    let keep: Vec<i64> = (0..n as i64).filter(|i| !failed.iter().any(|(f, _)| *f as i64 == *i)).collect();
    let images = images.f_index_select(0, &Tensor::f_from_slice(&keep)?)?;
    Ok(Decoded { images, failed })
}

/// Writes each image of a uint8 `(N, C, H, W)` CPU tensor (C = 1 or 3) to its path; the format
/// follows the extension (PNG, BMP, TIFF, PGM/PPM, JPEG at quality 95). Parent folders are created.
pub fn write_images(images: &Tensor, paths: &[PathBuf]) -> Result<()> {
    const F: &str = "write_images";
    let size = images.size();
    if images.kind() != Kind::Uint8
        || size.len() != 4
        || !(size[1] == 1 || size[1] == 3)
        || images.device() != Device::Cpu
    {
        return Err(MfrError::invalid(
            F,
            format!("images must be a uint8 CPU tensor (N, 1 or 3, H, W), got {:?} of shape {size:?}", images.kind()),
        ));
    }
    if size[0] as usize != paths.len() {
        return Err(MfrError::invalid(F, format!("need one path per image ({}), got {}", size[0], paths.len())));
    }
    let hwc = images.f_permute([0, 2, 3, 1])?.f_contiguous()?;
    let data = crate::tensor_check::host_slice::<u8>(F, "images", &hwc)?;
    let (c, h, w) = (size[1] as usize, size[2] as u32, size[3] as u32);
    let per = c * h as usize * w as usize;
    let color = if c == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let results: Vec<Result<()>> = threads::install(|| {
        paths
            .par_iter()
            .enumerate()
            .map(|(i, path)| {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| MfrError::data(F, format!("cannot create {}: {e}", shown(parent.as_os_str()))))?;
                }
                image::save_buffer(path, &data[i * per..(i + 1) * per], w, h, color)
                    .map_err(|e| MfrError::data(F, format!("cannot write {}: {e}", shown(path.as_os_str()))))
            })
            .collect()
    })?;
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Rgb};

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
            ImageBuffer::from_fn(w, h, |x, y| Rgb([x as u8 * 10, y as u8 * 10, 200]));
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
        let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
            ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, 90]));
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn truncated_jpegs_fail_and_trailing_bytes_do_not() {
        let whole = jpeg_bytes(32, 24);
        assert!(decode_images(&[ImageSource::Bytes(whole.clone())], &opts(24, 32, 3)).is_ok());
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"camera maker data");
        assert!(decode_images(&[ImageSource::Bytes(trailing)], &opts(24, 32, 3)).is_ok());
        let scan = whole.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        for keep in [scan + (whole.len() - scan) / 2, whole.len() - 2, whole.len() - 1] {
            let cut = ImageSource::Bytes(whole[..keep].to_vec());
            let err = decode_images(&[cut], &opts(24, 32, 3)).err().expect("a truncated JPEG must not decode");
            assert!(matches!(&err, MfrError::Data(m) if m.contains("truncated JPEG")), "{err}");
        }
    }

    fn opts(h: usize, w: usize, c: usize) -> DecodeOptions {
        DecodeOptions { height: h, width: w, channels: c, flips: Vec::new(), skip_errors: false }
    }

    #[test]
    fn decodes_to_chw_and_flips() {
        let src = vec![ImageSource::Bytes(png_bytes(4, 3)), ImageSource::Bytes(png_bytes(4, 3))];
        let mut o = opts(3, 4, 3);
        o.flips = vec![false, true];
        let d = decode_images(&src, &o).unwrap();
        assert_eq!(d.images.size(), vec![2, 3, 3, 4]);
        let v = Vec::<u8>::try_from(d.images.flatten(0, -1)).unwrap();
        // image 0, channel 0 (red = 10 x), row 0: 0, 10, 20, 30; channel 2 constant 200
        assert_eq!(&v[0..4], &[0, 10, 20, 30]);
        assert_eq!(v[2 * 12], 200);
        // flipped: red row reversed
        assert_eq!(&v[36..40], &[30, 20, 10, 0]);
        let g = decode_images(&src[..1], &opts(6, 8, 1)).unwrap();
        assert_eq!(g.images.size(), vec![1, 1, 6, 8]);
    }

    #[test]
    fn write_then_read_back() {
        let dir = std::env::temp_dir().join(format!("mfr_write_{}", std::process::id()));
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Uint8, Device::Cpu)).view([2, 3, 4, 5]);
        let paths: Vec<PathBuf> = ["a/x.png", "b/y.bmp"].iter().map(|p| dir.join(p)).collect();
        write_images(&t, &paths).unwrap();
        let src: Vec<ImageSource> = paths.iter().map(|p| ImageSource::Path(p.clone())).collect();
        let back = decode_images(&src, &opts(4, 5, 3)).unwrap();
        assert!(back.images.equal(&t));
        std::fs::remove_dir_all(&dir).ok();
        assert!(write_images(&t, &paths[..1]).is_err());
    }

    #[test]
    fn failures_are_named_or_skipped() {
        let src = vec![
            ImageSource::Bytes(png_bytes(2, 2)),
            ImageSource::Bytes(b"junk".to_vec()),
            ImageSource::Path("/no/such.png".into()),
        ];
        let e = decode_images(&src, &opts(2, 2, 3)).err().unwrap().to_string();
        assert!(
            e.contains("image 1: cannot decode <in-memory image 1, 4 bytes>") && e.contains("(1 more images failed)"),
            "{e}"
        );
        let mut o = opts(2, 2, 3);
        o.skip_errors = true;
        let d = decode_images(&src, &o).unwrap();
        assert_eq!(d.images.size()[0], 1);
        assert_eq!(d.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(d.failed[1].1.contains("cannot read /no/such.png"));
        assert!(decode_images(&src, &opts(2, 2, 2)).is_err());
    }
}
