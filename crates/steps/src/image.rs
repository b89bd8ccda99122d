//! The image step: encoded images (JPEG, PNG, WebP; one per element of a
//! BYTES input) decoded, resized to the model's size, put in its channel
//! order and layout, and scaled and normalised to FP32, one image per row.

use std::io::Cursor;
use std::path::Path;

use hone_core::{Backend, DataType, Error, ModelMetadata, Result, Tensor, TensorData, TensorSpec};
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits, RgbImage};

use crate::Params;

pub const INPUT: &str = "image";
pub const OUTPUT: &str = "pixels";

/// How a picture becomes `height` × `width`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resize {
    /// Both sides to the target, whatever the aspect ratio.
    Stretch,
    /// To the target height, the width following the aspect ratio (rounded
    /// up, at most the target width); the rest of the row is padding. This
    /// is how PP-OCR's text-line classifier and recogniser take a line.
    FitHeight,
    /// Inside the target with the aspect ratio kept, padding right and below.
    Fit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Channels {
    Rgb,
    Bgr,
    Gray,
}

/// How pixels are resampled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Filter {
    /// OpenCV's `INTER_LINEAR`: bilinear from the four nearest source
    /// pixels, no smoothing when shrinking, rounded to 8 bits as `cv2.resize`
    /// returns them. What OpenCV-based pre-processing (PaddleOCR, YOLO
    /// exports) does.
    Linear,
    /// A triangle filter widened when shrinking (antialiased), as Pillow's
    /// `BILINEAR` and torchvision's `antialias=True` do.
    Triangle,
}

pub struct ImageStep {
    meta: ModelMetadata,
    filter: Filter,
    width: u32,
    height: u32,
    resize: Resize,
    channels: Channels,
    nchw: bool,
    scale: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
    pad: f32,
    /// The largest side a picture may have, and the most bytes one may
    /// decode into: a small file must not decode into gigabytes.
    max_side: u32,
    max_decoded: u64,
    /// Pixels one engine call may decode in all, so a request of many
    /// large pictures cannot hold an instance for minutes.
    max_pixels: u64,
}

impl ImageStep {
    pub fn load(_dir: &Path, p: &Params) -> Result<Self> {
        let side = |key: &str| -> Result<u32> {
            match p.number(key, 0u32, "a number of pixels")? {
                0 => Err(Error::invalid(format!(
                    "the image step needs config parameter {key} (pixels, above 0)"
                ))),
                n => Ok(n),
            }
        };
        let (width, height) = (side("width")?, side("height")?);
        let resize = match p.choice("resize", &["stretch", "fit_height", "fit"])? {
            "stretch" => Resize::Stretch,
            "fit_height" => Resize::FitHeight,
            _ => Resize::Fit,
        };
        let channels = match p.choice("channels", &["rgb", "bgr", "gray"])? {
            "rgb" => Channels::Rgb,
            "bgr" => Channels::Bgr,
            _ => Channels::Gray,
        };
        let nchw = p.choice("layout", &["nchw", "nhwc"])? == "nchw";
        let filter = match p.choice("interpolation", &["linear", "triangle"])? {
            "linear" => Filter::Linear,
            _ => Filter::Triangle,
        };
        let c = if channels == Channels::Gray { 1 } else { 3 };
        let per_channel = |key: &str, default: f32| -> Result<Vec<f32>> {
            let v = p.numbers(key, &[default])?;
            match v.len() {
                1 => Ok(vec![v.first().copied().unwrap_or(default); c]),
                n if n == c => Ok(v),
                n => Err(Error::invalid(format!(
                    "config parameter {key} has {n} values: give 1 or {c} (one per channel)"
                ))),
            }
        };
        let std = per_channel("std", 1.0)?;
        if std.contains(&0.0) {
            return Err(Error::invalid("config parameter std must not be 0"));
        }
        let (w, h, c) = (i64::from(width), i64::from(height), c as i64);
        let dims = if nchw {
            vec![-1, c, h, w]
        } else {
            vec![-1, h, w, c]
        };
        Ok(Self {
            filter,
            meta: ModelMetadata {
                inputs: vec![TensorSpec {
                    name: INPUT.into(),
                    dtype: DataType::Bytes,
                    dims: vec![-1],
                }],
                outputs: vec![TensorSpec {
                    name: OUTPUT.into(),
                    dtype: DataType::F32,
                    dims,
                }],
            },
            width,
            height,
            resize,
            channels,
            nchw,
            scale: p.number("scale", 1.0 / 255.0, "a number (pixel values are 0-255)")?,
            mean: per_channel("mean", 0.0)?,
            std,
            pad: p.number("pad_value", 0.0f32, "a number")?,
            max_side: p.number("max_side", 8192u32, "a number of pixels")?,
            max_decoded: p.number("max_decoded_bytes", 256u64 << 20, "a number of bytes")?,
            max_pixels: p.number("max_pixels", 64u64 << 20, "a number of pixels")?,
        })
    }

    fn decode(&self, bytes: &[u8], row: usize) -> Result<DynamicImage> {
        let bad = |why: String| Error::invalid(format!("input '{INPUT}' row {row}: {why}"));
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(format!("cannot read the image: {e}")))?;
        if reader.format().is_none() {
            return Err(bad("is not a JPEG, PNG or WebP image".into()));
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_decoded);
        reader.limits(limits);
        reader
            .decode()
            .map_err(|e| bad(format!("cannot decode the image: {e}")))
    }

    /// One picture's values in the output layout, appended to `out`.
    fn pixels(&self, img: &DynamicImage, out: &mut Vec<f32>) {
        let (tw, th) = (self.width, self.height);
        let (w, h) = (img.width().max(1), img.height().max(1));
        let (rw, rh) = match self.resize {
            Resize::Stretch => (tw, th),
            Resize::FitHeight => {
                let scaled = (f64::from(th) * f64::from(w) / f64::from(h)).ceil() as u32;
                (scaled.clamp(1, tw), th)
            }
            Resize::Fit => {
                let s = (f64::from(tw) / f64::from(w)).min(f64::from(th) / f64::from(h));
                let fit = |x: u32, max: u32| ((f64::from(x) * s).round() as u32).clamp(1, max);
                (fit(w, tw), fit(h, th))
            }
        };
        let c = self.mean.len();
        let start = out.len();
        out.resize(start + c * (tw * th) as usize, self.pad);
        let Some(dst) = out.get_mut(start..) else {
            return;
        };
        let rgb = match self.filter {
            Filter::Linear => linear(&img.to_rgb8(), rw, rh),
            Filter::Triangle => img.resize_exact(rw, rh, FilterType::Triangle).into_rgb8(),
        };
        let (tw, th) = (tw as usize, th as usize);
        for (x, y, px) in rgb.enumerate_pixels() {
            let [r, g, b] = px.0;
            let values: [f32; 3] = match self.channels {
                Channels::Rgb => [r, g, b].map(f32::from),
                Channels::Bgr => [b, g, r].map(f32::from),
                // ITU-R 601 luma, as most libraries convert.
                Channels::Gray => [
                    0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b),
                    0.0,
                    0.0,
                ],
            };
            let (x, y) = (x as usize, y as usize);
            for (ch, v) in values.iter().take(c).enumerate() {
                let mean = self.mean.get(ch).copied().unwrap_or(0.0);
                let std = self.std.get(ch).copied().unwrap_or(1.0);
                let at = if self.nchw {
                    (ch * th + y) * tw + x
                } else {
                    (y * tw + x) * c + ch
                };
                if let Some(d) = dst.get_mut(at) {
                    *d = (v * self.scale - mean) / std;
                }
            }
        }
    }
}

/// `src` resized to `w` × `h` the way OpenCV's `INTER_LINEAR` does: each
/// target pixel's centre mapped into the source (half-pixel offsets,
/// clamped at the edges), the four neighbours weighted, rounded to 8 bits.
fn linear(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = (src.width().max(1), src.height().max(1));
    let axis = |dst: u32, len: u32| -> Vec<(u32, u32, f32)> {
        let scale = f64::from(len) / f64::from(dst.max(1));
        (0..dst)
            .map(|d| {
                let s = ((f64::from(d) + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as u32).min(len - 1);
                let i1 = (i0 + 1).min(len - 1);
                let f = if i0 == len - 1 {
                    0.0
                } else {
                    (s - f64::from(i0)) as f32
                };
                (i0, i1, f)
            })
            .collect()
    };
    let (xs, ys) = (axis(w, sw), axis(h, sh));
    let mut out = RgbImage::new(w, h);
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let p = |xx, yy| src.get_pixel(xx, yy).0.map(f32::from);
            let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
            let mut v = [0u8; 3];
            for (o, (((a, b), c), d)) in v.iter_mut().zip(a.iter().zip(b).zip(c).zip(d)) {
                let top = a + (b - a) * fx;
                let bottom = c + (d - c) * fx;
                *o = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x as u32, y as u32, image::Rgb(v));
        }
    }
    out
}

impl Backend for ImageStep {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        let mut out = Vec::new();
        let mut rows = 0usize;
        let mut pixels = 0u64;
        for request in batch {
            let Some(t) = request.first() else {
                return Err(Error::invalid(format!("input '{INPUT}' is missing")));
            };
            let TensorData::Strings(images) = &t.data else {
                return Err(Error::invalid(format!("input '{INPUT}' must be BYTES")));
            };
            for bytes in images {
                let img = self.decode(bytes, rows)?;
                pixels += u64::from(img.width()) * u64::from(img.height());
                if pixels > self.max_pixels {
                    return Err(Error::invalid(format!(
                        "input '{INPUT}' row {rows}: the pictures hold more than {} pixels together (config parameter max_pixels)",
                        self.max_pixels
                    )));
                }
                self.pixels(&img, &mut out);
                rows += 1;
            }
        }
        let mut shape = self
            .meta
            .outputs
            .first()
            .map(|o| o.dims.clone())
            .unwrap_or_default();
        if let Some(d0) = shape.first_mut() {
            *d0 = rows as i64;
        }
        Ok(vec![Tensor::from_f32(shape, &out)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn step(params: &[(&str, &str)]) -> ImageStep {
        let map: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ImageStep::load(Path::new("."), &Params::new(&map)).unwrap()
    }

    fn png(w: u32, h: u32, rgb: [u8; 3]) -> bytes::Bytes {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        bytes::Bytes::from(out.into_inner())
    }

    fn images(v: Vec<bytes::Bytes>) -> Tensor {
        Tensor::new(
            DataType::Bytes,
            vec![v.len() as i64],
            TensorData::Strings(v),
        )
        .unwrap()
    }

    #[test]
    fn fit_height_keeps_the_aspect_ratio_and_pads_the_rest() {
        let mut s = step(&[
            ("width", "8"),
            ("height", "2"),
            ("resize", "fit_height"),
            ("channels", "bgr"),
            ("mean", "0.5"),
            ("std", "0.5"),
        ]);
        // 20 x 10 red: 2 high, 4 wide, then 4 columns of padding.
        let out = s
            .infer(&[&[images(vec![png(20, 10, [255, 0, 0])])]])
            .unwrap();
        assert_eq!(out[0].shape, vec![1, 3, 2, 8]);
        let v = out[0].to_f64s().unwrap();
        // BGR: channel 2 is red (1.0 after normalising), channel 0 blue (-1).
        assert_eq!(&v[0..8], &[-1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&v[32..36], &[1.0; 4]);
    }

    #[test]
    fn nhwc_stretch_and_a_corrupt_image_is_named() {
        let mut s = step(&[
            ("width", "2"),
            ("height", "2"),
            ("layout", "nhwc"),
            ("scale", "1"),
        ]);
        let out = s
            .infer(&[&[images(vec![png(3, 5, [10, 20, 30]), png(1, 1, [1, 2, 3])])]])
            .unwrap();
        assert_eq!(out[0].shape, vec![2, 2, 2, 3]);
        assert_eq!(&out[0].to_f64s().unwrap()[..3], &[10.0, 20.0, 30.0]);
        let e = s
            .infer(&[&[images(vec![
                png(1, 1, [0; 3]),
                bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\nbroken"),
            ])]])
            .unwrap_err();
        assert!(
            e.message.contains("row 1") && e.message.contains("decode"),
            "{}",
            e.message
        );
        let e = s
            .infer(&[&[images(vec![bytes::Bytes::from_static(b"hello")])]])
            .unwrap_err();
        assert!(
            e.message.contains("not a JPEG, PNG or WebP"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_missing_size_is_named() {
        let map = BTreeMap::new();
        let e = ImageStep::load(Path::new("."), &Params::new(&map))
            .err()
            .unwrap();
        assert!(e.message.contains("width"));
    }
}
