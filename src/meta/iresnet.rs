//! IR-ResNet as in insightface's arcface_torch (`iresnet18/34/50/100`): a 3x3 stem, four stages
//! of improved residual blocks (BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus a
//! 1x1-conv + BN shortcut on each stage's first, strided block), then BN -> flatten -> fc ->
//! BatchNorm1d with its scale frozen at 1. Style points after the first three stages. Channels w, 2w, 4w, 8w (w = 64 in the published
//! models); 112x112 input gives 7x7 maps before the fc. Names follow arcface_torch's state_dict.

use super::layers::{Conv, Init, Layers, Scale};
use crate::error::Result;

pub fn iresnet<L: Layers>(l: &mut L, x: &L::X, blocks: [usize; 4], width: i64, embedding_dim: i64) -> Result<L::X> {
    let conv3 = |out, stride| Conv::new(out, 3, stride, 1, Init::ConvNormal);
    let mut x = l.conv("conv1", x, conv3(width, 1))?;
    x = l.batch_norm("bn1", &x, Scale::Learned)?;
    x = l.prelu("prelu", &x)?;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = width << stage;
        for b in 0..n {
            let p = format!("layer{}.{b}", stage + 1);
            let stride = if b == 0 { 2 } else { 1 };
            let mut h = l.batch_norm(&format!("{p}.bn1"), &x, Scale::Learned)?;
            h = l.conv(&format!("{p}.conv1"), &h, conv3(planes, 1))?;
            h = l.batch_norm(&format!("{p}.bn2"), &h, Scale::Learned)?;
            h = l.prelu(&format!("{p}.prelu"), &h)?;
            h = l.conv(&format!("{p}.conv2"), &h, conv3(planes, stride))?;
            h = l.batch_norm(&format!("{p}.bn3"), &h, Scale::Learned)?;
            let shortcut = if b == 0 {
                let s = l.conv(&format!("{p}.downsample.0"), &x, Conv::new(planes, 1, 2, 0, Init::ConvNormal))?;
                l.batch_norm(&format!("{p}.downsample.1"), &s, Scale::Learned)?
            } else {
                x
            };
            x = l.add(&h, &shortcut)?;
        }
        if stage < 3 {
            x = l.style_point(stage, &x)?;
        }
    }
    x = l.batch_norm("bn2", &x, Scale::Learned)?;
    let x = l.flatten(&x)?;
    let x = l.linear("fc", &x, embedding_dim, true)?;
    l.batch_norm("features", &x, Scale::Frozen)
}
