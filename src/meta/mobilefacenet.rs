//! MobileFaceNet as in insightface's arcface_torch (`get_mbf`: blocks 1, 4, 6, 2, scale 2):
//! a strided 3x3 stem, a grouped 3x3 block, then depth-wise stages (1x1 expand -> depth-wise 3x3
//! -> linear 1x1, residual when shapes allow), a 1x1 conv to 4w channels and the GDC head (a
//! global depth-wise conv over the whole map, linear without bias, BatchNorm1d). `width` w is
//! arcface_torch's 64 x scale (128); every channel and group count scales with it, so w = 128
//! reproduces the published model and its state_dict names. Style points after the three
//! residual stages.

use super::layers::{Conv, Init, Layers, Scale};
use crate::error::Result;

/// conv -> BN -> PReLU (`ConvBlock`).
fn conv_block<L: Layers>(l: &mut L, name: &str, x: &L::X, c: Conv) -> Result<L::X> {
    let x = l.conv(&format!("{name}.layers.0"), x, c)?;
    let x = l.batch_norm(&format!("{name}.layers.1"), &x, Scale::Learned)?;
    l.prelu(&format!("{name}.layers.2"), &x)
}

/// conv -> BN (`LinearBlock`).
fn linear_block<L: Layers>(l: &mut L, name: &str, x: &L::X, c: Conv) -> Result<L::X> {
    let x = l.conv(&format!("{name}.layers.0"), x, c)?;
    l.batch_norm(&format!("{name}.layers.1"), &x, Scale::Learned)
}

/// 1x1 to `groups` channels -> depth-wise 3x3 (stride) -> linear 1x1 to `out` (`DepthWise`).
fn depth_wise<L: Layers>(l: &mut L, name: &str, x: &L::X, out: i64, stride: i64, groups: i64) -> Result<L::X> {
    let h = conv_block(l, &format!("{name}.layers.0"), x, Conv::new(groups, 1, 1, 0, Init::Conv))?;
    let h = conv_block(l, &format!("{name}.layers.1"), &h, Conv::new(groups, 3, stride, 1, Init::Conv).groups(groups))?;
    linear_block(l, &format!("{name}.layers.2"), &h, Conv::new(out, 1, 1, 0, Init::Conv))
}

fn depth_wise_residual<L: Layers>(l: &mut L, name: &str, x: &L::X, c: i64, groups: i64) -> Result<L::X> {
    let h = depth_wise(l, name, x, c, 1, groups)?;
    l.add(x, &h)
}

/// `n` residual depth-wise blocks keeping `c` channels (`Residual`).
fn residual<L: Layers>(l: &mut L, name: &str, x: &L::X, c: i64, n: usize, groups: i64) -> Result<L::X> {
    let mut x = depth_wise_residual(l, &format!("{name}.layers.0"), x, c, groups)?;
    for j in 1..n {
        x = depth_wise_residual(l, &format!("{name}.layers.{j}"), &x, c, groups)?;
    }
    Ok(x)
}

pub fn mobilefacenet<L: Layers>(l: &mut L, x: &L::X, w: i64, embedding_dim: i64, input_size: i64) -> Result<L::X> {
    let mut x = conv_block(l, "layers.0", x, Conv::new(w, 3, 2, 1, Init::Conv))?;
    x = conv_block(l, "layers.1", &x, Conv::new(w, 3, 1, 1, Init::Conv).groups(w / 2))?;
    x = depth_wise(l, "layers.2", &x, w, 2, w)?;
    x = residual(l, "layers.3", &x, w, 4, w)?;
    x = l.style_point(0, &x)?;
    x = depth_wise(l, "layers.4", &x, 2 * w, 2, 2 * w)?;
    x = residual(l, "layers.5", &x, 2 * w, 6, 2 * w)?;
    x = l.style_point(1, &x)?;
    x = depth_wise(l, "layers.6", &x, 2 * w, 2, 4 * w)?;
    x = residual(l, "layers.7", &x, 2 * w, 2, 2 * w)?;
    x = l.style_point(2, &x)?;
    x = conv_block(l, "conv_sep", &x, Conv::new(4 * w, 1, 1, 0, Init::Conv))?;
    // GDC: a depth-wise conv whose kernel covers the whole final map (7x7 at 112x112).
    let side = (0..4).fold(input_size, |s, _| (s - 1) / 2 + 1);
    x = linear_block(l, "features.layers.0", &x, Conv::new(4 * w, side, 1, 0, Init::Conv).groups(4 * w))?;
    let x = l.flatten(&x)?;
    let x = l.linear("features.layers.2", &x, embedding_dim, false)?;
    l.batch_norm("features.layers.3", &x, Scale::Learned)
}
