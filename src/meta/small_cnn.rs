//! The small CNN for CPU work: four blocks of conv3x3 -> BatchNorm -> PReLU -> max-pool 2x2
//! (channels w, 2w, 4w, 8w; style points after the first three), then flatten -> linear (`fc`) -> BatchNorm1d (`features`) -> embedding.

use super::layers::{Conv, Init, Layers, Scale};
use crate::error::Result;

pub fn small_cnn<L: Layers>(l: &mut L, x: &L::X, width: i64, embedding_dim: i64) -> Result<L::X> {
    let mut x = l.conv("block0.conv", x, Conv::new(width, 3, 1, 1, Init::Conv))?;
    for i in 0..4 {
        if i > 0 {
            x = l.conv(&format!("block{i}.conv"), &x, Conv::new(width << i, 3, 1, 1, Init::Conv))?;
        }
        x = l.batch_norm(&format!("block{i}.bn"), &x, Scale::Learned)?;
        x = l.prelu(&format!("block{i}.prelu"), &x)?;
        x = l.max_pool2(&x)?;
        if i < 3 {
            x = l.style_point(i, &x)?;
        }
    }
    let x = l.flatten(&x)?;
    let x = l.linear("fc", &x, embedding_dim, true)?;
    l.batch_norm("features", &x, Scale::Learned)
}
