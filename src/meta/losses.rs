//! MFR's three losses, as differentiable tch expressions (so they run inside the meta-step's
//! second-order graph, and from Python with ordinary autograd).
//!
//! All features are L2-normalized first (norms clamped at 1e-12). For one domain with gallery
//! features `G` and probe features `P` (B x D, row b = identity b), `M = G P^T`:
//!
//! * hard-pair attention: hard positives `Pos = {i : M_ii < tau_p}`, hard negatives
//!   `Neg = {(i, j), i != j : M_ij > tau_n}` (chosen on `M` without gradient), and
//!   `L_hp = 1/(2|Pos|) sum_Pos ||g_i - p_i||^2 - 1/(2|Neg|) sum_Neg ||g_i - p_j||^2`, using
//!   `||g - p||^2 = 2 - 2 g.p` for unit vectors; an empty set contributes 0 (still connected to
//!   the graph, with zero gradient).
//! * soft classification: prototypes `w_b = normalize(g_b + p_b)` (gradients flow through them),
//!   logits `s * cos(x, w)` for every gallery and probe feature, cross-entropy with label b,
//!   averaged over the 2B samples.
//! * domain alignment: `mu_k` = mean normalized feature of domain k, `mu = mean_k mu_k`,
//!   `L_da = 1/n sum_k ||mu_k - mu||^2`; with a single domain it is 0.

use tch::{Kind, Reduction, Tensor};

use crate::error::{MfrError, Result};
use crate::tensor_check::Arg;

/// What the hard-pair mining found, for logging.
#[derive(Clone, Debug, PartialEq)]
pub struct HardPairStats {
    pub hard_positives: i64,
    pub hard_negatives: i64,
    /// Mean similarity of all genuine pairs (the diagonal of M) and of all impostor pairs.
    pub mean_positive_similarity: f64,
    pub mean_negative_similarity: f64,
}

const EPS: f64 = 1e-12;

pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_div(&x.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(EPS)?)?)
}

fn check_features(func: &str, name: &str, t: &Tensor) -> Result<()> {
    Arg::new(func, name, t).usable_device()?.dims(2)?.floating()?;
    if t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
        return Err(MfrError::invalid(func, format!("argument '{name}' must be finite")));
    }
    Ok(())
}

fn check_pair(func: &str, gallery: &Tensor, probe: &Tensor) -> Result<i64> {
    check_features(func, "gallery", gallery)?;
    check_features(func, "probe", probe)?;
    Arg::new(func, "gallery", gallery).same_device(&Arg::new(func, "probe", probe))?;
    if gallery.size() != probe.size() {
        return Err(MfrError::invalid(
            func,
            format!(
                "gallery and probe must both be (B, D) with row b = identity b, got {:?} and {:?}",
                gallery.size(),
                probe.size()
            ),
        ));
    }
    let b = gallery.size()[0];
    if b < 2 {
        return Err(MfrError::invalid(func, format!("needs B >= 2 identities (impostor pairs need two), got B = {b}")));
    }
    Ok(b)
}

pub fn hard_pair_attention(
    gallery: &Tensor,
    probe: &Tensor,
    tau_p: f64,
    tau_n: f64,
) -> Result<(Tensor, HardPairStats)> {
    check_pair("hard_pair_attention", gallery, probe)?;
    raw::hard_pair_attention(gallery, probe, tau_p, tau_n)
}

pub fn soft_classification(gallery: &Tensor, probe: &Tensor, scale: f64) -> Result<Tensor> {
    check_pair("soft_classification", gallery, probe)?;
    check_scale(scale)?;
    raw::soft_classification(gallery, probe, scale)
}

pub fn check_scale(scale: f64) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(MfrError::invalid("soft_classification", format!("scale must be a positive number, got {scale}")));
    }
    Ok(())
}

pub fn domain_alignment(domains: &[Tensor]) -> Result<Tensor> {
    const F: &str = "domain_alignment";
    if domains.is_empty() {
        return Err(MfrError::invalid(F, "needs the features of at least one domain"));
    }
    for (k, d) in domains.iter().enumerate() {
        check_features(F, &format!("domains[{k}]"), d)?;
        Arg::new(F, &format!("domains[{k}]"), d).non_empty()?.same_device(&Arg::new(F, "domains[0]", &domains[0]))?;
        if d.size()[1] != domains[0].size()[1] {
            return Err(MfrError::invalid(
                F,
                format!("all domains need the same feature size, got {} and {}", domains[0].size()[1], d.size()[1]),
            ));
        }
    }
    raw::domain_alignment(domains)
}

/// The losses without argument checks, for callers whose features are well-formed by
/// construction (the meta-step): the public checks cost device synchronisations per call.
pub(crate) mod raw {
    use super::*;

    pub fn hard_pair_attention(
        gallery: &Tensor,
        probe: &Tensor,
        tau_p: f64,
        tau_n: f64,
    ) -> Result<(Tensor, HardPairStats)> {
        let b = gallery.size()[0];
        let (g, p) = (l2_normalize(gallery)?, l2_normalize(probe)?);
        let m = g.f_matmul(&p.f_tr()?)?;
        let md = m.f_detach()?;
        let eye = Tensor::f_eye(b, (Kind::Bool, m.device()))?;
        let pos_mask = md.f_diagonal(0, 0, 1)?.f_lt(tau_p)?;
        let neg_mask = md.f_gt(tau_n)?.f_logical_and(&eye.f_logical_not()?)?;
        let n_pos = pos_mask.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        let n_neg = neg_mask.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        // ||g - p||^2 = 2 - 2 g.p for unit vectors.
        let dist = m.f_mul_scalar(-2.0)?.f_add_scalar(2.0)?;
        let pos_dist = dist.f_diagonal(0, 0, 1)?.f_mul(&pos_mask.f_to_kind(m.kind())?)?.f_sum(m.kind())?;
        let neg_dist = dist.f_mul(&neg_mask.f_to_kind(m.kind())?)?.f_sum(m.kind())?;
        let loss = pos_dist
            .f_div_scalar(2.0 * n_pos.max(1) as f64)?
            .f_sub(&neg_dist.f_div_scalar(2.0 * n_neg.max(1) as f64)?)?;
        let diag_mean = md.f_diagonal(0, 0, 1)?.f_mean(Kind::Double)?.f_double_value(&[])?;
        let off_mean = if b > 1 {
            let total = md.f_sum(Kind::Double)?.f_double_value(&[])?;
            (total - diag_mean * b as f64) / (b * (b - 1)) as f64
        } else {
            f64::NAN
        };
        let stats = HardPairStats {
            hard_positives: n_pos,
            hard_negatives: n_neg,
            mean_positive_similarity: diag_mean,
            mean_negative_similarity: off_mean,
        };
        Ok((loss, stats))
    }

    pub fn soft_classification(gallery: &Tensor, probe: &Tensor, scale: f64) -> Result<Tensor> {
        let b = gallery.size()[0];
        let (g, p) = (l2_normalize(gallery)?, l2_normalize(probe)?);
        let w = l2_normalize(&g.f_add(&p)?)?;
        let features = Tensor::f_cat(&[&g, &p], 0)?;
        let logits = features.f_matmul(&w.f_tr()?)?.f_mul_scalar(scale)?;
        let labels = Tensor::f_arange(b, (Kind::Int64, g.device()))?.f_repeat([2])?;
        Ok(logits.f_cross_entropy_loss::<&Tensor>(&labels, None, Reduction::Mean, -100, 0.0)?)
    }

    pub fn domain_alignment(domains: &[Tensor]) -> Result<Tensor> {
        let means = domains
            .iter()
            .map(|d| l2_normalize(d)?.f_mean_dim(Some([0i64].as_slice()), false, d.kind()).map_err(MfrError::from))
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::f_stack(&means, 0)?;
        let center = stacked.f_mean_dim(Some([0i64].as_slice()), true, stacked.kind())?;
        Ok(stacked
            .f_sub(&center)?
            .f_pow_tensor_scalar(2)?
            .f_sum_dim_intlist(Some([1i64].as_slice()), false, stacked.kind())?
            .f_mean(stacked.kind())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f64], rows: i64) -> Tensor {
        Tensor::from_slice(v).view([rows, -1])
    }

    #[test]
    fn hard_pairs_by_hand() {
        // Unit vectors: g0 = e0, g1 = e1; p0 = (cos 60deg, sin 60deg), p1 = e1.
        let g = t(&[1.0, 0.0, 0.0, 1.0], 2);
        let c = 0.5f64;
        let p = t(&[c, (1.0 - c * c).sqrt(), 0.0, 1.0], 2);
        // M = [[0.5, 0], [0.866, 1]]: hard positive i=0 (0.5 < 0.6); hard negative (1,0) (0.866 > 0.6).
        let (loss, stats) = hard_pair_attention(&g, &p, 0.6, 0.6).unwrap();
        assert_eq!((stats.hard_positives, stats.hard_negatives), (1, 1));
        let expected = (2.0 - 2.0 * 0.5) / 2.0 - (2.0 - 2.0 * (1.0 - c * c).sqrt()) / 2.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-12);
        let (zero, s) = hard_pair_attention(&g, &p, -2.0, 2.0).unwrap();
        assert_eq!((s.hard_positives, s.hard_negatives, zero.double_value(&[])), (0, 0, 0.0));
    }

    #[test]
    fn classification_and_alignment() {
        let g = Tensor::randn([4, 8], (Kind::Double, Device::Cpu));
        let l = soft_classification(&g, &g, 10.0).unwrap().double_value(&[]);
        // identical gallery and probe: prototypes are the features themselves
        let gn = l2_normalize(&g).unwrap();
        let logits = gn.matmul(&gn.tr()) * 10.0;
        let expect = logits.cross_entropy_loss::<&Tensor>(
            &Tensor::arange(4, (Kind::Int64, Device::Cpu)),
            None,
            Reduction::Mean,
            -100,
            0.0,
        );
        assert!((l - expect.double_value(&[])).abs() < 1e-12);
        assert_eq!(domain_alignment(&[g.shallow_clone()]).unwrap().double_value(&[]), 0.0);
        let a = t(&[1.0, 0.0], 1);
        let b = t(&[0.0, 1.0], 1);
        // mu = (0.5, 0.5): each domain mean is sqrt(0.5) away -> 0.5
        assert!((domain_alignment(&[a, b]).unwrap().double_value(&[]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bad_input() {
        let g = Tensor::zeros([3, 4], (Kind::Double, Device::Cpu));
        assert!(hard_pair_attention(&g, &g.narrow(0, 0, 2), 0.5, 0.5)
            .err()
            .unwrap()
            .to_string()
            .contains("must both be (B, D)"));
        let one = Tensor::zeros([1, 4], (Kind::Double, Device::Cpu));
        assert!(soft_classification(&one, &one, 1.0).err().unwrap().to_string().contains("B >= 2"));
        assert!(soft_classification(&g, &g, -1.0).is_err());
        let nan = Tensor::from_slice(&[f64::NAN, 1.0, 1.0, 1.0]).view([2, 2]);
        assert!(hard_pair_attention(&nan, &nan, 0.5, 0.5).err().unwrap().to_string().contains("finite"));
        assert!(domain_alignment(&[]).is_err());
    }
}
