//! The layer vocabulary every backbone is written in, and its two interpreters.
//!
//! An architecture is one generic function over [`Layers`]; run with [`ShapeRecorder`] it yields
//! the parameter and buffer specs (names, shapes, init) and checks that the input size works
//! through every layer; run with [`Runner`] it computes the forward pass with explicit parameter
//! tensors, consumed in the same order. Writing each network once keeps specs and forward from
//! ever disagreeing.

use tch::Tensor;

use crate::error::{MfrError, Result};

pub const BN_MOMENTUM: f64 = 0.1;
pub const BN_EPS: f64 = 1e-5;

/// How a parameter is initialised (done on the Python side, with torch's seeded RNG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Kaiming-normal (fan_out, ReLU gain), as torchvision ResNets and MobileFaceNet.
    Conv,
    /// Normal(0, 0.1), as insightface's IR-ResNets.
    ConvNormal,
    /// Default `nn.Linear` init.
    Linear,
    Ones,
    Zeros,
    /// PReLU slope 0.25.
    Prelu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
}

/// Whether a pass normalizes with batch statistics (and updates running ones) or uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BnMode {
    /// Batch statistics; running statistics updated (passes at theta).
    TrainUpdate,
    /// Batch statistics; running statistics untouched (theta' passes).
    TrainNoUpdate,
    /// Running statistics.
    Eval,
}

/// Whether a BatchNorm's scale is learned or fixed (insightface freezes the embedding BN's scale
/// at 1; it is then a buffer, under the same state_dict name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Learned,
    Frozen,
}

/// A 2-d convolution without bias.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub out: i64,
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub init: Init,
}

impl Conv {
    pub fn new(out: i64, kernel: i64, stride: i64, padding: i64, init: Init) -> Self {
        Conv { out, kernel, stride, padding, groups: 1, init }
    }

    pub fn groups(self, groups: i64) -> Self {
        Conv { groups, ..self }
    }
}

/// The operations backbones are made of. `name` is the state_dict prefix of the layer.
pub trait Layers {
    type X;
    fn conv(&mut self, name: &str, x: &Self::X, c: Conv) -> Result<Self::X>;
    fn batch_norm(&mut self, name: &str, x: &Self::X, scale: Scale) -> Result<Self::X>;
    fn prelu(&mut self, name: &str, x: &Self::X) -> Result<Self::X>;
    fn linear(&mut self, name: &str, x: &Self::X, out: i64, bias: bool) -> Result<Self::X>;
    fn max_pool2(&mut self, x: &Self::X) -> Result<Self::X>;
    fn flatten(&mut self, x: &Self::X) -> Result<Self::X>;
    fn add(&mut self, a: &Self::X, b: &Self::X) -> Result<Self::X>;
    /// A point between stages where MixStyle may mix feature statistics (`point` counts from 0,
    /// after the first stage; see [`StyleMix`]); the identity otherwise.
    fn style_point(&mut self, point: usize, x: &Self::X) -> Result<Self::X>;
}

/// MixStyle (Zhou et al., ICLR 2021) at some of an architecture's style points: each sample's
/// channel statistics (mean and standard deviation over the spatial dimensions, both detached)
/// are replaced by a mix with those of its partner `perm[i]`: `lam * own + (1 - lam) * partner`.
pub struct StyleMix {
    /// (N,) int64: each sample's partner.
    pub perm: Tensor,
    /// (N,) floating point: each sample's mixing weight, in [0, 1].
    pub lam: Tensor,
    /// The style points mixed at.
    pub points: Vec<usize>,
}

/// Added to the variance before its square root, as the MixStyle reference code does.
pub const STYLE_EPS: f64 = 1e-6;

impl StyleMix {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let dims: &[i64] = &[2, 3];
        let mu = x.f_mean_dim(dims, true, None::<tch::Kind>)?.f_detach()?;
        let sig = x.f_var_dim(dims, true, true)?.f_add_scalar(STYLE_EPS)?.f_sqrt()?.f_detach()?;
        let normed = x.f_sub(&mu)?.f_div(&sig)?;
        let lam = self.lam.f_to_kind(x.kind())?.f_view([-1, 1, 1, 1])?;
        let rest = lam.f_neg()?.f_add_scalar(1.0)?;
        let mix = |s: &Tensor| -> Result<Tensor> {
            Ok(s.f_mul(&lam)?.f_add(&s.f_index_select(0, &self.perm)?.f_mul(&rest)?)?)
        };
        Ok(normed.f_mul(&mix(&sig)?)?.f_add(&mix(&mu)?)?)
    }
}

/// Collects specs and propagates shapes (C, H, W) or (F,) without touching tensors.
pub struct ShapeRecorder {
    pub func: String,
    pub params: Vec<TensorSpec>,
    pub buffers: Vec<TensorSpec>,
    /// How many style points the architecture has.
    pub style_points: usize,
}

impl ShapeRecorder {
    pub fn new(func: &str) -> Self {
        ShapeRecorder { func: func.to_string(), params: Vec::new(), buffers: Vec::new(), style_points: 0 }
    }

    fn param(&mut self, name: String, shape: Vec<i64>, init: Init) {
        self.params.push(TensorSpec { name, shape, init });
    }

    fn buffer(&mut self, name: String, shape: Vec<i64>, init: Init) {
        self.buffers.push(TensorSpec { name, shape, init });
    }

    fn err(&self, what: String) -> MfrError {
        MfrError::invalid(&self.func, what)
    }
}

impl Layers for ShapeRecorder {
    type X = Vec<i64>;

    fn conv(&mut self, name: &str, x: &Vec<i64>, c: Conv) -> Result<Vec<i64>> {
        let &[cin, h, w] = x.as_slice() else {
            return Err(self.err(format!("{name}: a convolution needs a (C, H, W) input, got {x:?}")));
        };
        if cin % c.groups != 0 || c.out % c.groups != 0 {
            return Err(self.err(format!("{name}: {cin} -> {} channels do not split into {} groups", c.out, c.groups)));
        }
        let side = |s: i64| (s + 2 * c.padding - c.kernel) / c.stride + 1;
        let (oh, ow) = (side(h), side(w));
        if h + 2 * c.padding < c.kernel || oh < 1 || ow < 1 {
            return Err(self.err(format!(
                "the input is too small: {name} gets a {h}x{w} feature map, smaller than its {k}x{k} kernel \
                 (use a larger input_size)",
                k = c.kernel
            )));
        }
        self.param(format!("{name}.weight"), vec![c.out, cin / c.groups, c.kernel, c.kernel], c.init);
        Ok(vec![c.out, oh, ow])
    }

    fn batch_norm(&mut self, name: &str, x: &Vec<i64>, scale: Scale) -> Result<Vec<i64>> {
        let n = x[0];
        match scale {
            Scale::Learned => self.param(format!("{name}.weight"), vec![n], Init::Ones),
            Scale::Frozen => self.buffer(format!("{name}.weight"), vec![n], Init::Ones),
        }
        self.param(format!("{name}.bias"), vec![n], Init::Zeros);
        self.buffer(format!("{name}.running_mean"), vec![n], Init::Zeros);
        self.buffer(format!("{name}.running_var"), vec![n], Init::Ones);
        Ok(x.clone())
    }

    fn prelu(&mut self, name: &str, x: &Vec<i64>) -> Result<Vec<i64>> {
        self.param(format!("{name}.weight"), vec![x[0]], Init::Prelu);
        Ok(x.clone())
    }

    fn linear(&mut self, name: &str, x: &Vec<i64>, out: i64, bias: bool) -> Result<Vec<i64>> {
        let &[fin] = x.as_slice() else {
            return Err(self.err(format!("{name}: a linear layer needs a flat input, got {x:?}")));
        };
        self.param(format!("{name}.weight"), vec![out, fin], Init::Linear);
        if bias {
            self.param(format!("{name}.bias"), vec![out], Init::Linear);
        }
        Ok(vec![out])
    }

    fn max_pool2(&mut self, x: &Vec<i64>) -> Result<Vec<i64>> {
        if x.len() != 3 || x[1] < 2 || x[2] < 2 {
            return Err(self.err(format!("the input is too small: max-pooling a {x:?} feature map")));
        }
        Ok(vec![x[0], x[1] / 2, x[2] / 2])
    }

    fn flatten(&mut self, x: &Vec<i64>) -> Result<Vec<i64>> {
        Ok(vec![x.iter().product()])
    }

    fn add(&mut self, a: &Vec<i64>, b: &Vec<i64>) -> Result<Vec<i64>> {
        if a != b {
            return Err(self.err(format!("residual shapes differ: {a:?} vs {b:?}")));
        }
        Ok(a.clone())
    }

    fn style_point(&mut self, point: usize, x: &Vec<i64>) -> Result<Vec<i64>> {
        self.style_points = self.style_points.max(point + 1);
        Ok(x.clone())
    }
}

/// Runs the forward pass, taking parameters and buffers in spec order.
pub struct Runner<'a> {
    params: &'a [Tensor],
    buffers: &'a [Tensor],
    next_param: usize,
    next_buffer: usize,
    mode: BnMode,
    momentum: f64,
    mix: Option<&'a StyleMix>,
}

impl<'a> Runner<'a> {
    pub fn new(params: &'a [Tensor], buffers: &'a [Tensor], mode: BnMode, momentum: f64) -> Self {
        Runner { params, buffers, next_param: 0, next_buffer: 0, mode, momentum, mix: None }
    }

    /// Mix styles at `mix`'s points (training passes of MixStyle).
    pub fn with_mix(self, mix: Option<&'a StyleMix>) -> Self {
        Runner { mix, ..self }
    }

    fn param(&mut self) -> Result<&'a Tensor> {
        let t = self.params.get(self.next_param).ok_or_else(|| MfrError::internal("backbone ran out of parameters"))?;
        self.next_param += 1;
        Ok(t)
    }

    fn buffer(&mut self) -> Result<&'a Tensor> {
        let t = self.buffers.get(self.next_buffer).ok_or_else(|| MfrError::internal("backbone ran out of buffers"))?;
        self.next_buffer += 1;
        Ok(t)
    }

    /// Every parameter and buffer was used exactly once.
    pub fn finish(&self) -> Result<()> {
        if self.next_param != self.params.len() || self.next_buffer != self.buffers.len() {
            return Err(MfrError::internal("backbone specs and forward disagree"));
        }
        Ok(())
    }
}

impl Layers for Runner<'_> {
    type X = Tensor;

    fn conv(&mut self, _: &str, x: &Tensor, c: Conv) -> Result<Tensor> {
        let w = self.param()?;
        let (s, p) = (c.stride, c.padding);
        Ok(x.f_conv2d::<&Tensor>(w, None, [s, s], [p, p], [1, 1], c.groups)?)
    }

    fn batch_norm(&mut self, _: &str, x: &Tensor, scale: Scale) -> Result<Tensor> {
        let weight = match scale {
            Scale::Learned => self.param()?,
            Scale::Frozen => self.buffer()?,
        };
        let bias = self.param()?;
        let (rm, rv) = (self.buffer()?, self.buffer()?);
        let training = self.mode != BnMode::Eval;
        let (rm, rv) = if self.mode == BnMode::TrainNoUpdate { (None, None) } else { (Some(rm), Some(rv)) };
        Ok(x.f_batch_norm(Some(weight), Some(bias), rm, rv, training, self.momentum, BN_EPS, false)?)
    }

    /// PReLU as `relu(x) - a * relu(-x)` (equal values; a per-channel slope `a`). Its second-order
    /// backward is built from ReLU masks, several times cheaper than that of `aten::prelu`, which
    /// dominates the meta-step's double backward otherwise.
    fn prelu(&mut self, _: &str, x: &Tensor) -> Result<Tensor> {
        let a = self.param()?.f_view([1, -1, 1, 1])?;
        Ok(x.f_relu()?.f_sub(&a.f_mul(&x.f_neg()?.f_relu()?)?)?)
    }

    fn linear(&mut self, _: &str, x: &Tensor, _: i64, bias: bool) -> Result<Tensor> {
        let w = self.param()?;
        let b = if bias { Some(self.param()?) } else { None };
        Ok(x.f_linear(w, b)?)
    }

    fn max_pool2(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?)
    }

    fn flatten(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_flatten(1, -1)?)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(a.f_add(b)?)
    }

    fn style_point(&mut self, point: usize, x: &Tensor) -> Result<Tensor> {
        match self.mix {
            Some(mix) if mix.points.contains(&point) => mix.apply(x),
            _ => Ok(x.shallow_clone()),
        }
    }
}
