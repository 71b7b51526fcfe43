//! Closed-set identification (CMC): for every probe, the rank of its best-scoring gallery mate.
//!
//! rank = 1 + the number of gallery entries of *other* identities whose cosine similarity is >= the
//! best mate's (ties count against the probe, so a constant embedding gets no credit). Rank-k
//! accuracy is the fraction of probes with rank <= k.
//!
//! The probe x gallery similarity matrix is never held whole: tiles of at most `TILE_ELEMENTS`
//! scores are computed with a matmul on the embeddings' device, in two passes with identical
//! tiling (best mate score, then the count above it), so both passes round alike.

use tch::{Device, Kind, Tensor};

use crate::error::{MfrError, Result};
use crate::tensor_check::Arg;

/// Scores per tile (16 Mi scores: 64 MiB in float32).
const TILE_ELEMENTS: i64 = 1 << 24;

pub struct Identification {
    /// 1-based rank of each probe's best mate.
    pub ranks: Vec<i64>,
}

impl Identification {
    /// Fraction of probes with rank <= k, for each k.
    pub fn cmc(&self, ranks: &[usize]) -> Vec<f64> {
        let n = self.ranks.len() as f64;
        ranks.iter().map(|&k| self.ranks.iter().filter(|&&r| r as usize <= k).count() as f64 / n).collect()
    }
}

fn check_embeddings(func: &str, name: &str, t: &Tensor) -> Result<()> {
    Arg::new(func, name, t).usable_device()?.dims(2)?.non_empty()?.floating()?;
    Ok(())
}

fn check_ids(func: &str, name: &str, ids: &[i64], rows: i64, rows_name: &str) -> Result<()> {
    if ids.len() as i64 != rows {
        return Err(MfrError::invalid(
            func,
            format!("argument '{name}' must have one id per row of '{rows_name}' ({rows}), got {}", ids.len()),
        ));
    }
    Ok(())
}

/// Ranks of every probe. `gallery`: (G, D), `probes`: (P, D), floating point, same device.
pub fn identification(
    gallery: &Tensor,
    gallery_ids: &[i64],
    probes: &Tensor,
    probe_ids: &[i64],
) -> Result<Identification> {
    const F: &str = "identification";
    check_embeddings(F, "gallery", gallery)?;
    check_embeddings(F, "probes", probes)?;
    Arg::new(F, "gallery", gallery).same_device(&Arg::new(F, "probes", probes))?;
    let (g, d) = (gallery.size()[0], gallery.size()[1]);
    let (p, dp) = (probes.size()[0], probes.size()[1]);
    if d != dp {
        return Err(MfrError::invalid(
            F,
            format!("gallery and probes must have the same embedding size, got {d} and {dp}"),
        ));
    }
    check_ids(F, "gallery_ids", gallery_ids, g, "gallery")?;
    check_ids(F, "probe_ids", probe_ids, p, "probes")?;
    let mut known: Vec<i64> = gallery_ids.to_vec();
    known.sort_unstable();
    if let Some(i) = probe_ids.iter().position(|id| known.binary_search(id).is_err()) {
        return Err(MfrError::invalid(
            F,
            format!("every probe identity must appear in the gallery (closed-set identification), but probe {i} has id {} which does not", probe_ids[i]),
        ));
    }
    if let Some(i) = all_finite_rows(gallery)? {
        return Err(MfrError::invalid(
            F,
            format!("argument 'gallery' must be finite, got a non-finite value in row {i}"),
        ));
    }
    if let Some(i) = all_finite_rows(probes)? {
        return Err(MfrError::invalid(
            F,
            format!("argument 'probes' must be finite, got a non-finite value in row {i}"),
        ));
    }
    let _guard = tch::no_grad_guard();
    let device = gallery.device();
    let normalize = |x: &Tensor| -> Result<Tensor> {
        let x = x.f_to_kind(compute_kind(x.kind()))?;
        Ok(x.f_div(&x.f_norm_scalaropt_dim(2, [1], true)?.f_clamp_min(1e-12)?)?)
    };
    let (gn, pn) = (normalize(gallery)?, normalize(probes)?);
    let gid = Tensor::f_from_slice(gallery_ids)?.f_to_device(device)?;
    let pid = Tensor::f_from_slice(probe_ids)?.f_to_device(device)?;
    let g_tile = g.clamp(1, TILE_ELEMENTS);
    let p_tile = (TILE_ELEMENTS / g_tile).clamp(1, p);
    let mut ranks = Vec::with_capacity(p as usize);
    for p0 in (0..p).step_by(p_tile as usize) {
        let pl = p_tile.min(p - p0);
        let pn_t = pn.f_narrow(0, p0, pl)?;
        let pid_t = pid.f_narrow(0, p0, pl)?.f_unsqueeze(1)?;
        let tiles = || (0..g).step_by(g_tile as usize).map(|g0| (g0, g_tile.min(g - g0)));
        // Pass 1: best mate score per probe.
        let mut best = Tensor::f_full([pl], f64::NEG_INFINITY, (pn.kind(), device))?;
        for (g0, gl) in tiles() {
            let s = pn_t.f_matmul(&gn.f_narrow(0, g0, gl)?.f_tr()?)?;
            let mate = pid_t.f_eq_tensor(&gid.f_narrow(0, g0, gl)?.f_unsqueeze(0)?)?;
            let masked = s.f_masked_fill(&mate.f_logical_not()?, f64::NEG_INFINITY)?;
            best = best.f_maximum(&masked.f_amax([1], false)?)?;
        }
        // Pass 2: impostor entries scoring >= the best mate.
        let best_col = best.f_unsqueeze(1)?;
        let mut above = Tensor::f_zeros([pl], (Kind::Int64, device))?;
        for (g0, gl) in tiles() {
            let s = pn_t.f_matmul(&gn.f_narrow(0, g0, gl)?.f_tr()?)?;
            let other = pid_t.f_ne_tensor(&gid.f_narrow(0, g0, gl)?.f_unsqueeze(0)?)?;
            let hit = s.f_ge_tensor(&best_col)?.f_logical_and(&other)?;
            above = above.f_add(&hit.f_sum_dim_intlist(1, false, Kind::Int64)?)?;
        }
        let above = Vec::<i64>::try_from(&above.f_to_device(Device::Cpu)?)?;
        ranks.extend(above.into_iter().map(|c| c + 1));
    }
    Ok(Identification { ranks })
}

/// Half precision scores would tie too often to rank reliably; compute them in float32 at least.
fn compute_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

fn all_finite_rows(x: &Tensor) -> Result<Option<i64>> {
    let bad = x.f_isfinite()?.f_logical_not()?.f_any_dim(1, false)?;
    if bad.f_any()?.f_int64_value(&[])? == 0 {
        return Ok(None);
    }
    Ok(Some(bad.f_nonzero()?.f_int64_value(&[0, 0])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_hand() {
        // gallery: ids 0,1,2 along axes; probe 0 near id 0; probe 1 nearer id 2 than its own id 1.
        let gallery = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view([3, 3]);
        let probes = Tensor::from_slice(&[0.9f32, 0.1, 0.0, 0.0, 0.3, 0.9]).view([2, 3]);
        let r = identification(&gallery, &[0, 1, 2], &probes, &[0, 1]).unwrap();
        assert_eq!(r.ranks, vec![1, 2]);
        assert_eq!(r.cmc(&[1, 2]), vec![0.5, 1.0]);
    }

    #[test]
    fn ties_count_against_the_probe_and_errors_are_clear() {
        let gallery = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
        let probes = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
        let r = identification(&gallery, &[5, 6, 7, 5], &probes, &[5]).unwrap();
        assert_eq!(r.ranks, vec![3]);
        let e = identification(&gallery, &[5, 6, 7, 5], &probes, &[9]).err().unwrap();
        assert!(e.to_string().contains("probe 0 has id 9"), "{e}");
        let e = identification(&gallery, &[5, 6], &probes, &[5]).err().unwrap();
        assert!(e.to_string().contains("one id per row of 'gallery' (4), got 2"), "{e}");
    }
}
