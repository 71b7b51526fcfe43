//! Functional backbones: the forward pass takes its parameters explicitly, so the meta-step can
//! run it at theta and at theta' = theta - alpha g with the same code.
//!
//! Each architecture is written once over [`Layers`] (see `layers.rs`); its parameter names are
//! the state_dict names of the PyTorch model it follows, so checkpoints load both ways.
//!
//! BatchNorm policy: every training pass normalizes with the statistics of its own batch (the meta-
//! step feeds one domain per pass, so statistics are per domain); running statistics are updated
//! only by the passes at theta, never by theta' passes; eval mode uses the running statistics.

use tch::{Device, Kind, Tensor};

use super::iresnet::iresnet;
use super::layers::{BnMode, Layers, Runner, ShapeRecorder, StyleMix, TensorSpec, BN_MOMENTUM};
use super::mobilefacenet::mobilefacenet;
use super::small_cnn::small_cnn;
use crate::error::{MfrError, Result};
use crate::tensor_check::{device_name, kind_name};

/// The architectures, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Four conv-BN-PReLU-maxpool blocks and a linear embedding (CPU work).
    SmallCnn,
    /// insightface arcface_torch's IR-ResNet with these blocks per stage.
    IResNet([usize; 4]),
    /// insightface arcface_torch's MobileFaceNet (blocks 1, 4, 6, 2).
    MobileFaceNet,
}

pub const ARCH_NAMES: [&str; 7] =
    ["small_cnn", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "resnet28", "mobilefacenet"];

impl Arch {
    pub fn from_name(name: &str) -> Result<Arch> {
        Ok(match name {
            "small_cnn" => Arch::SmallCnn,
            "iresnet18" => Arch::IResNet([2, 2, 2, 2]),
            "iresnet34" => Arch::IResNet([3, 4, 6, 3]),
            "iresnet50" => Arch::IResNet([3, 4, 14, 3]),
            "iresnet100" => Arch::IResNet([3, 13, 30, 3]),
            // The paper's ResNet-28: the IR-ResNet layout with 13 residual blocks, i.e. 28 weight
            // layers (stem conv + 2 x 13 block convs + embedding fc, not counting shortcuts).
            "resnet28" => Arch::IResNet([2, 3, 5, 3]),
            "mobilefacenet" => Arch::MobileFaceNet,
            other => {
                return Err(MfrError::invalid(
                    "Backbone",
                    format!("unknown backbone '{other}'; available: {}", ARCH_NAMES.join(", ")),
                ))
            }
        })
    }

    /// Base channel width when none is given (the published models').
    pub fn default_width(self) -> i64 {
        match self {
            Arch::SmallCnn => 16,
            Arch::IResNet(_) => 64,
            Arch::MobileFaceNet => 128,
        }
    }

    pub fn default_embedding_dim(self) -> i64 {
        match self {
            Arch::SmallCnn => 128,
            _ => 512,
        }
    }

    fn build<L: Layers>(self, net: &Backbone, l: &mut L, x: &L::X) -> Result<L::X> {
        match self {
            Arch::SmallCnn => small_cnn(l, x, net.width, net.embedding_dim),
            Arch::IResNet(blocks) => iresnet(l, x, blocks, net.width, net.embedding_dim),
            Arch::MobileFaceNet => mobilefacenet(l, x, net.width, net.embedding_dim, net.input_size),
        }
    }
}

/// A configured backbone: architecture, sizes, and the specs its forward consumes.
#[derive(Clone, Debug)]
pub struct Backbone {
    pub name: String,
    pub arch: Arch,
    pub in_channels: i64,
    pub input_size: i64,
    pub width: i64,
    pub embedding_dim: i64,
    pub params: Vec<TensorSpec>,
    pub buffers: Vec<TensorSpec>,
    /// The points between stages where MixStyle may mix (see [`StyleMix`]).
    pub style_points: usize,
}

impl Backbone {
    pub fn new(
        name: &str,
        in_channels: i64,
        input_size: i64,
        width: Option<i64>,
        embedding_dim: Option<i64>,
    ) -> Result<Self> {
        let func = format!("Backbone('{name}')");
        let arch = Arch::from_name(name)?;
        let width = width.unwrap_or(arch.default_width());
        let embedding_dim = embedding_dim.unwrap_or(arch.default_embedding_dim());
        if in_channels != 1 && in_channels != 3 {
            return Err(MfrError::invalid(&func, format!("in_channels must be 1 or 3, got {in_channels}")));
        }
        if input_size < 16 || (arch == Arch::SmallCnn && input_size % 16 != 0) {
            let want = if arch == Arch::SmallCnn { "a positive multiple of 16" } else { "at least 16" };
            return Err(MfrError::invalid(&func, format!("input_size must be {want}, got {input_size}")));
        }
        if width < 2 || embedding_dim < 1 {
            return Err(MfrError::invalid(
                &func,
                format!("width must be >= 2 and embedding_dim >= 1, got {width} and {embedding_dim}"),
            ));
        }
        let mut net = Backbone {
            name: name.to_string(),
            arch,
            in_channels,
            input_size,
            width,
            embedding_dim,
            params: Vec::new(),
            buffers: Vec::new(),
            style_points: 0,
        };
        let mut rec = ShapeRecorder::new(&func);
        let out = arch.build(&net, &mut rec, &vec![in_channels, input_size, input_size])?;
        if out != [embedding_dim] {
            return Err(MfrError::internal(format!("{func} produces {out:?}, not ({embedding_dim},)")));
        }
        (net.params, net.buffers, net.style_points) = (rec.params, rec.buffers, rec.style_points);
        Ok(net)
    }

    /// Checks parameters, buffers and images against the specs (see the two parts below).
    pub fn check_inputs(&self, func: &str, params: &[Tensor], buffers: &[Tensor], images: &Tensor) -> Result<()> {
        let (kind, device) = self.check_tensors(func, params, buffers)?;
        self.check_images(func, images, kind, device)
    }

    /// Counts, shapes, one floating dtype and one device for every parameter and buffer; returns
    /// that dtype and device (what the images must match).
    pub fn check_tensors(&self, func: &str, params: &[Tensor], buffers: &[Tensor]) -> Result<(Kind, Device)> {
        if params.len() != self.params.len() || buffers.len() != self.buffers.len() {
            return Err(MfrError::invalid(
                func,
                format!(
                    "{} needs {} parameters and {} buffers, got {} and {}",
                    self.name,
                    self.params.len(),
                    self.buffers.len(),
                    params.len(),
                    buffers.len()
                ),
            ));
        }
        for (t, s) in params.iter().zip(&self.params).chain(buffers.iter().zip(&self.buffers)) {
            if t.size() != s.shape {
                return Err(MfrError::invalid(
                    func,
                    format!("{} must have shape {:?}, got {:?}", s.name, s.shape, t.size()),
                ));
            }
        }
        let kind = common_kind(func, params)?;
        if let Some((t, s)) = buffers.iter().zip(&self.buffers).find(|(t, _)| t.kind() != kind) {
            return Err(MfrError::invalid(
                func,
                format!(
                    "buffer {} must have the parameters' dtype {}, got {} (convert the whole module: net.to(dtype))",
                    s.name,
                    kind_name(kind),
                    kind_name(t.kind())
                ),
            ));
        }
        let device = params[0].device();
        if let Some((t, s)) =
            params.iter().zip(&self.params).chain(buffers.iter().zip(&self.buffers)).find(|(t, _)| t.device() != device)
        {
            return Err(MfrError::device(
                func,
                format!(
                    "{} is on {} but {} on {}",
                    s.name,
                    device_name(t.device()),
                    self.params[0].name,
                    device_name(device)
                ),
            ));
        }
        Ok((kind, device))
    }

    /// Images (N, C, S, S) of the configured channels and size, dtype and device.
    pub fn check_images(&self, func: &str, images: &Tensor, kind: Kind, device: Device) -> Result<()> {
        let size = images.size();
        let expect = [self.in_channels, self.input_size, self.input_size];
        if size.len() != 4 || size[1..] != expect {
            return Err(MfrError::invalid(
                func,
                format!("images must be (N, {}, {}, {}), got {size:?}", expect[0], expect[1], expect[2]),
            ));
        }
        let image_kind = images.f_kind()?;
        if image_kind != kind {
            return Err(MfrError::invalid(
                func,
                format!("images must have the parameters' dtype {}, got {}", kind_name(kind), kind_name(image_kind)),
            ));
        }
        if images.device() != device {
            return Err(MfrError::device(
                func,
                format!("images are on {} but the parameters on {}", device_name(images.device()), device_name(device)),
            ));
        }
        Ok(())
    }

    /// Embeddings (N, embedding_dim) of `images` (N, C, S, S) with the given parameters.
    pub fn forward(&self, params: &[Tensor], buffers: &[Tensor], images: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.forward_with_momentum(params, buffers, images, mode, BN_MOMENTUM)
    }

    /// As [`forward`](Self::forward), with the running-statistics momentum given (re-estimating
    /// statistics on a new domain passes 1/(k+1) for the k-th batch: a cumulative average).
    pub fn forward_with_momentum(
        &self,
        params: &[Tensor],
        buffers: &[Tensor],
        images: &Tensor,
        mode: BnMode,
        momentum: f64,
    ) -> Result<Tensor> {
        self.forward_mixed(params, buffers, images, mode, momentum, None)
    }

    /// As [`forward_with_momentum`](Self::forward_with_momentum), mixing feature statistics at
    /// `mix`'s style points (MixStyle; checked by [`check_mix`](Self::check_mix)).
    pub fn forward_mixed(
        &self,
        params: &[Tensor],
        buffers: &[Tensor],
        images: &Tensor,
        mode: BnMode,
        momentum: f64,
        mix: Option<&StyleMix>,
    ) -> Result<Tensor> {
        let mut run = Runner::new(params, buffers, mode, momentum).with_mix(mix);
        let out = self.arch.build(self, &mut run, images)?;
        run.finish()?;
        Ok(out)
    }

    /// A MixStyle request fits this backbone and a batch of `n` images on `device`: a partner index
    /// in [0, n) and a weight in [0, 1] per image, style points this architecture has.
    pub fn check_mix(&self, func: &str, mix: &StyleMix, n: i64, device: Device) -> Result<()> {
        let bad = |what: String| Err(MfrError::invalid(func, what));
        if mix.perm.kind() != Kind::Int64 || mix.perm.size() != [n] || mix.perm.device() != device {
            return bad(format!(
                "mix partners must be an int64 tensor of shape ({n},) on {device:?}, got {:?} {:?} on {:?}",
                mix.perm.kind(),
                mix.perm.size(),
                mix.perm.device()
            ));
        }
        if !mix.lam.is_floating_point() || mix.lam.size() != [n] || mix.lam.device() != device {
            return bad(format!(
                "mix weights must be a floating-point tensor of shape ({n},) on {device:?}, got {:?} {:?} on {:?}",
                mix.lam.kind(),
                mix.lam.size(),
                mix.lam.device()
            ));
        }
        if n > 0 {
            let (lo, hi) = (mix.perm.f_min()?.int64_value(&[]), mix.perm.f_max()?.int64_value(&[]));
            if lo < 0 || hi >= n {
                return bad(format!("mix partners must lie in [0, {n}), got values in [{lo}, {hi}]"));
            }
            let (lo, hi) = (mix.lam.f_min()?.double_value(&[]), mix.lam.f_max()?.double_value(&[]));
            if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) {
                return bad(format!("mix weights must lie in [0, 1], got values in [{lo}, {hi}]"));
            }
        }
        if let Some(&p) = mix.points.iter().find(|&&p| p >= self.style_points) {
            return bad(format!(
                "style point {p} does not exist: {} has {} (after its first {} stages: 0 to {})",
                self.name,
                self.style_points,
                self.style_points,
                self.style_points.saturating_sub(1)
            ));
        }
        Ok(())
    }
}

/// The element type every parameter must share (floating point).
pub fn common_kind(func: &str, params: &[Tensor]) -> Result<Kind> {
    let k = params.first().map(|p| p.kind()).ok_or_else(|| MfrError::invalid(func, "no parameters"))?;
    if params.iter().any(|p| p.kind() != k) {
        return Err(MfrError::invalid(func, "all parameters must share one dtype"));
    }
    if !matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(MfrError::invalid(func, format!("parameters must be floating point, got {}", kind_name(k))));
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tensors(specs: &[TensorSpec]) -> Vec<Tensor> {
        specs.iter().map(|s| Tensor::ones(s.shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.1).collect()
    }

    #[test]
    fn published_sizes_and_names() {
        let n = Backbone::new("iresnet50", 3, 112, None, None).unwrap();
        let count: i64 = n.params.iter().map(|s| s.shape.iter().product::<i64>()).sum();
        assert_eq!(count, 43_590_336);
        assert_eq!(n.params[0].name, "conv1.weight");
        assert_eq!(n.buffers.last().unwrap().name, "features.running_var");
        assert!(n.buffers.iter().any(|b| b.name == "features.weight"));
        assert_eq!(n.params.iter().find(|s| s.name == "fc.weight").unwrap().shape, vec![512, 512 * 7 * 7]);
    }

    #[test]
    fn every_architecture_runs_and_consumes_all_tensors() {
        for name in ARCH_NAMES {
            let n = Backbone::new(name, 1, 32, Some(4), Some(8)).unwrap();
            let (p, b) = (tensors(&n.params), tensors(&n.buffers));
            let x = Tensor::randn([4, 1, 32, 32], (Kind::Float, Device::Cpu));
            n.check_inputs("t", &p, &b, &x).unwrap();
            let y = n.forward(&p, &b, &x, BnMode::TrainNoUpdate).unwrap();
            assert_eq!(y.size(), vec![4, 8], "{name}");
        }
    }

    #[test]
    fn style_mixing_with_oneself_changes_nothing_and_bad_mixes_are_refused() {
        for name in ARCH_NAMES {
            let n = Backbone::new(name, 1, 32, Some(4), Some(8)).unwrap();
            assert_eq!(n.style_points, 3, "{name}");
            let (p, b) = (tensors(&n.params), tensors(&n.buffers));
            let x = Tensor::randn([4, 1, 32, 32], (Kind::Float, Device::Cpu));
            let plain = n.forward(&p, &b, &x, BnMode::TrainNoUpdate).unwrap();
            let own = StyleMix {
                perm: Tensor::arange(4, (Kind::Int64, Device::Cpu)),
                lam: Tensor::full([4], 0.3, (Kind::Float, Device::Cpu)),
                points: vec![0, 1, 2],
            };
            n.check_mix("t", &own, 4, Device::Cpu).unwrap();
            let mixed = n.forward_mixed(&p, &b, &x, BnMode::TrainNoUpdate, BN_MOMENTUM, Some(&own)).unwrap();
            assert!(mixed.allclose(&plain, 1e-4, 1e-5, false), "{name}");
            let swapped = StyleMix { perm: Tensor::from_slice(&[1i64, 0, 3, 2]), ..own };
            let changed = n.forward_mixed(&p, &b, &x, BnMode::TrainNoUpdate, BN_MOMENTUM, Some(&swapped)).unwrap();
            assert!(!changed.allclose(&plain, 1e-4, 1e-5, false), "{name}");
            let far = StyleMix { perm: Tensor::from_slice(&[1i64, 0, 3, 9]), ..swapped };
            assert!(n.check_mix("t", &far, 4, Device::Cpu).unwrap_err().to_string().contains("[0, 4)"));
        }
    }

    #[test]
    fn too_small_inputs_and_wrong_tensors_are_errors() {
        let err = Backbone::new("mobilefacenet", 3, 16, Some(7), None).unwrap_err().to_string();
        assert!(err.contains("do not split into"), "{err}");
        let n = Backbone::new("resnet28", 3, 16, Some(2), Some(4)).unwrap();
        let (p, b) = (tensors(&n.params), tensors(&n.buffers));
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let err = n.check_inputs("t", &p[1..], &b, &x).unwrap_err().to_string();
        assert!(err.contains("needs"), "{err}");
        let err = n.check_inputs("t", &p, &b, &x.to_kind(Kind::Double)).unwrap_err().to_string();
        assert!(err.contains("dtype"), "{err}");
        // A forward with too few tensors is an internal error, never a panic.
        assert!(n.forward(&p[..3], &b, &x, BnMode::Eval).is_err());
    }
}
