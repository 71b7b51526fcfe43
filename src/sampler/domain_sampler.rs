//! `DomainSampler`: MFR's domain-shift meta-batches.
//!
//! Every meta-batch draws, from *each* domain, `B` distinct identities with `k = images_per_id`
//! images each (the first is the gallery image, the others probes; all distinct when the identity
//! has enough images). Its splits say which domains are meta-train and which meta-test:
//! `LeaveOneOut` lists all N rotations (split r tests on domains r, r+1, .., r+m-1 mod N), `Random`
//! one seeded draw of m test domains per batch.
//!
//! Per domain, identities are consumed from a stream of seeded permutations (one per cycle), so
//! every identity is used before any repeats; a batch that straddles two cycles never repeats an
//! identity (the new cycle's identities already in the batch move to its end). An epoch has
//! `ceil(max_d identities_d / B)` batches: the largest domain is seen once; smaller ones cycle.
//!
//! Distributed: batch `i` of the single-process stream belongs to rank `i mod world_size`. Every
//! rank gets `ceil(L / world_size)` batches, so the union of the ranks is the single-process epoch
//! (extended by fewer than `world_size` batches from the same stream when `L` does not divide, as
//! `DistributedSampler` pads). Everything random comes from streams keyed by (seed, epoch, purpose),
//! so results do not depend on the thread count.

use rayon::prelude::*;

use crate::data::index::{shown, shuffle, stream_id, FaceIndex};
use crate::error::{MfrError, Result};
use crate::limits::{check_memory, product};
use crate::rng::Rng;
use crate::threads;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMode {
    LeaveOneOut,
    Random,
}

impl SplitMode {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "leave_one_out" => Ok(SplitMode::LeaveOneOut),
            "random" => Ok(SplitMode::Random),
            other => Err(MfrError::invalid(
                "DomainSampler",
                format!("split must be 'leave_one_out' or 'random', got '{other}'"),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    pub ids_per_domain: usize,
    pub images_per_id: usize,
    pub split: SplitMode,
    pub meta_test_domains: usize,
    pub seed: u64,
    pub rank: usize,
    pub world_size: usize,
}

pub struct DomainSampler {
    config: SamplerConfig,
    /// Per domain: its identities.
    domain_ids: Vec<Vec<u32>>,
    /// Per identity: its images.
    id_images: IdentityImages,
}

/// Images of every identity as one flat array (CSR): fewer scattered reads per draw than a Vec of
/// Vecs. When images are already grouped by identity in index order (a folder walk, most lists),
/// `flat[k] == k` and draws compute indices without touching `flat` at all.
struct IdentityImages {
    offsets: Vec<usize>,
    flat: Vec<u32>,
    grouped: bool,
}

impl IdentityImages {
    fn new(by_identity: Vec<Vec<u32>>) -> Self {
        let mut offsets = Vec::with_capacity(by_identity.len() + 1);
        offsets.push(0);
        let mut flat = Vec::with_capacity(by_identity.iter().map(Vec::len).sum());
        for imgs in &by_identity {
            flat.extend_from_slice(imgs);
            offsets.push(flat.len());
        }
        let grouped = flat.iter().enumerate().all(|(k, &v)| k == v as usize);
        IdentityImages { offsets, flat, grouped }
    }

    fn count(&self, id: u32) -> usize {
        self.offsets[id as usize + 1] - self.offsets[id as usize]
    }

    #[inline]
    fn image(&self, id: u32, pos: usize) -> i64 {
        let k = self.offsets[id as usize] + pos;
        if self.grouped {
            k as i64
        } else {
            i64::from(self.flat[k])
        }
    }
}

/// One epoch of this rank's meta-batches, flattened (D = domains, B = ids_per_domain,
/// k = images_per_id, m = meta_test_domains, n = batches).
pub struct EpochBatches {
    /// Global (single-process) number of each batch.
    pub batch_numbers: Vec<u64>,
    /// `n x D x B x k` image indices: per domain, per identity slot, gallery first.
    pub images: Vec<i64>,
    /// `n x D x B` identity numbers.
    pub identities: Vec<i64>,
    /// `n x m` meta-test domains of each batch (`Random` mode; empty for `LeaveOneOut`).
    pub test_domains: Vec<i64>,
}

const TAG_CYCLE: u64 = 0xC1C1;
const TAG_IMAGES: u64 = 0x1A6E;
const TAG_SPLIT: u64 = 0x5B17;

impl DomainSampler {
    pub fn new(index: &FaceIndex, config: SamplerConfig) -> Result<Self> {
        const F: &str = "DomainSampler";
        let c = &config;
        if c.ids_per_domain == 0 {
            return Err(MfrError::invalid(F, "ids_per_domain must be >= 1, got 0"));
        }
        if c.images_per_id < 2 {
            return Err(MfrError::invalid(
                F,
                format!("images_per_id must be >= 2 (a gallery and a probe image), got {}", c.images_per_id),
            ));
        }
        if c.world_size == 0 || c.rank >= c.world_size {
            return Err(MfrError::invalid(
                F,
                format!("rank must lie in 0..world_size, got rank {} with world_size {}", c.rank, c.world_size),
            ));
        }
        let n_domains = index.n_domains();
        if c.meta_test_domains == 0 || n_domains < c.meta_test_domains + 1 {
            return Err(MfrError::invalid(
                F,
                format!(
                    "a split needs at least one meta-train and {} meta-test domain(s) (meta_test_domains >= 1), but the index has {n_domains} domain(s)",
                    c.meta_test_domains
                ),
            ));
        }
        let domain_ids = index.identities_by_domain();
        let id_images = IdentityImages::new(index.images_by_identity());
        for (d, ids) in domain_ids.iter().enumerate() {
            if ids.len() < c.ids_per_domain {
                return Err(MfrError::invalid(
                    F,
                    format!(
                        "domain '{}' has {} identities, fewer than ids_per_domain={}",
                        shown(&index.domain_names[d]),
                        ids.len(),
                        c.ids_per_domain
                    ),
                ));
            }
            if let Some(&id) = ids.iter().find(|&&id| id_images.count(id) < 2) {
                return Err(MfrError::invalid(
                    F,
                    format!(
                        "identity '{}' of domain '{}' has 1 image, but MFR needs a gallery and a probe image per identity; \
                         drop such identities first (FaceIndex.filter(min_images=2))",
                        shown(&index.identity_names[id as usize]),
                        shown(&index.domain_names[d])
                    ),
                ));
            }
        }
        let sampler = DomainSampler { config, domain_ids, id_images };
        sampler.check_epoch_size()?;
        Ok(sampler)
    }

    /// Refuses a configuration whose epoch (identity streams over the padded single-process
    /// length, this rank's image and identity numbers, held twice while collected) cannot fit.
    fn check_epoch_size(&self) -> Result<()> {
        let c = &self.config;
        let (n_dom, b, k) = (self.n_domains() as u128, c.ids_per_domain as u128, c.images_per_id as u128);
        let (mine, total) = (self.len() as u128, product(&[self.len() as u128, c.world_size as u128]));
        let bytes = product(&[n_dom, total, b, 4]) + product(&[mine, n_dom, b, k + 1, 16]);
        check_memory(
            "DomainSampler",
            &format!("an epoch of {mine} batches of {n_dom} domains x {b} identities x {k} images"),
            bytes,
        )
    }

    pub fn n_domains(&self) -> usize {
        self.domain_ids.len()
    }

    /// Batches per epoch of the single-process stream.
    pub fn batches_per_epoch(&self) -> usize {
        let largest = self.domain_ids.iter().map(Vec::len).max().unwrap_or(0);
        largest.div_ceil(self.config.ids_per_domain)
    }

    /// This rank's batches per epoch.
    pub fn len(&self) -> usize {
        self.batches_per_epoch().div_ceil(self.config.world_size)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The meta-test domain sets of a batch, one per split.
    pub fn splits(&self, test_domains: &[i64]) -> Vec<(Vec<u32>, Vec<u32>)> {
        let n = self.n_domains();
        let m = self.config.meta_test_domains;
        let make = |test: Vec<u32>| {
            let train = (0..n as u32).filter(|d| !test.contains(d)).collect();
            (train, test)
        };
        match self.config.split {
            SplitMode::LeaveOneOut => (0..n).map(|r| make((0..m).map(|j| ((r + j) % n) as u32).collect())).collect(),
            SplitMode::Random => vec![make(test_domains.iter().map(|&d| d as u32).collect())],
        }
    }

    /// Per domain, the identity sequence of the whole (padded) epoch: `total` batches of B.
    fn identity_stream(&self, epoch: u64, domain: usize, total: usize) -> Vec<u32> {
        let b = self.config.ids_per_domain;
        let ids = &self.domain_ids[domain];
        let mut out: Vec<u32> = Vec::with_capacity(total * b);
        let mut cycle = 0u64;
        let mut perm: Vec<u32> = Vec::new();
        let mut cursor = 0;
        for _ in 0..total {
            let start = out.len();
            while out.len() - start < b {
                if cursor == perm.len() {
                    perm = ids.clone();
                    shuffle(
                        &mut perm,
                        &mut Rng::new(self.config.seed, stream_id(&[TAG_CYCLE, epoch, domain as u64, cycle])),
                    );
                    cycle += 1;
                    cursor = 0;
                    // Identities already in this batch go to the end of the new cycle.
                    if out.len() > start {
                        let mut taken = out[start..].to_vec();
                        taken.sort_unstable();
                        let (mut fresh, again): (Vec<u32>, Vec<u32>) =
                            perm.iter().partition(|id| taken.binary_search(id).is_err());
                        fresh.extend(again);
                        perm = fresh;
                    }
                }
                out.push(perm[cursor]);
                cursor += 1;
            }
        }
        out
    }

    /// This rank's meta-batches of `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> Result<EpochBatches> {
        let c = &self.config;
        let (n_dom, b, k) = (self.n_domains(), c.ids_per_domain, c.images_per_id);
        let total = self.len() * c.world_size; // padded single-process length
        let mine: Vec<u64> = (c.rank as u64..total as u64).step_by(c.world_size).collect();
        threads::install(|| {
            let streams: Vec<Vec<u32>> =
                (0..n_dom).into_par_iter().map(|d| self.identity_stream(epoch, d, total)).collect();
            let per_batch: Vec<(Vec<i64>, Vec<i64>, Vec<i64>)> = mine
                .par_iter()
                .map(|&i| {
                    let (mut images, mut identities) =
                        (Vec::with_capacity(n_dom * b * k), Vec::with_capacity(n_dom * b));
                    for (d, stream) in streams.iter().enumerate() {
                        let mut rng = Rng::new(c.seed, stream_id(&[TAG_IMAGES, epoch, i, d as u64]));
                        for &id in &stream[i as usize * b..(i as usize + 1) * b] {
                            identities.push(i64::from(id));
                            choose_images(&self.id_images, id, k, &mut rng, &mut images);
                        }
                    }
                    let test = match c.split {
                        SplitMode::LeaveOneOut => Vec::new(),
                        SplitMode::Random => {
                            let mut doms: Vec<i64> = (0..n_dom as i64).collect();
                            shuffle(&mut doms, &mut Rng::new(c.seed, stream_id(&[TAG_SPLIT, epoch, i])));
                            let mut t = doms[..c.meta_test_domains].to_vec();
                            t.sort_unstable();
                            t
                        }
                    };
                    (images, identities, test)
                })
                .collect();
            let mut out = EpochBatches {
                batch_numbers: mine.clone(),
                images: Vec::new(),
                identities: Vec::new(),
                test_domains: Vec::new(),
            };
            for (images, identities, test) in per_batch {
                out.images.extend(images);
                out.identities.extend(identities);
                out.test_domains.extend(test);
            }
            out
        })
    }
}

/// `k` images of one identity: distinct when it has at least `k`, else all of them (in random
/// order) and then draws with replacement; the first two always differ (it has >= 2 images).
fn choose_images(images: &IdentityImages, id: u32, k: usize, rng: &mut Rng, out: &mut Vec<i64>) {
    let m = images.count(id);
    // Distinct *positions* first (rejection on small integers, no memory reads), then the image
    // lookups, which are independent and so overlap their cache misses.
    let mut pos = [0usize; 16];
    let distinct = k.min(m);
    let mut chosen: Vec<usize> = Vec::new();
    let picks: &mut [usize] = if k <= pos.len() {
        &mut pos[..k]
    } else {
        chosen.resize(k, 0);
        &mut chosen
    };
    for j in 0..distinct {
        picks[j] = loop {
            let p = rng.below(m as u64) as usize;
            if !picks[..j].contains(&p) {
                break p;
            }
        };
    }
    for p in picks.iter_mut().skip(distinct) {
        *p = rng.below(m as u64) as usize;
    }
    out.extend(picks.iter().map(|&p| images.image(id, p)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn index(sizes: &[usize], images: usize) -> FaceIndex {
        let mut t = Vec::new();
        for (d, &n) in sizes.iter().enumerate() {
            for i in 0..n {
                for k in 0..images {
                    t.push((format!("{d}/{i}/{k}"), format!("d{d}"), format!("{i:03}")));
                }
            }
        }
        FaceIndex::from_triples("t", t).unwrap()
    }

    fn config(b: usize) -> SamplerConfig {
        SamplerConfig {
            ids_per_domain: b,
            images_per_id: 2,
            split: SplitMode::LeaveOneOut,
            meta_test_domains: 1,
            seed: 7,
            rank: 0,
            world_size: 1,
        }
    }

    #[test]
    fn epoch_covers_every_identity_before_repeats_and_batches_are_clean() {
        let idx = index(&[10, 7, 4], 3);
        let s = DomainSampler::new(&idx, config(3)).unwrap();
        assert_eq!(s.batches_per_epoch(), 4);
        let e = s.epoch(0).unwrap();
        let (d, b, k) = (3, 3, 2);
        for dom in 0..d {
            let mut stream = Vec::new();
            for batch in 0..4 {
                let ids: Vec<i64> = (0..b).map(|slot| e.identities[(batch * d + dom) * b + slot]).collect();
                assert_eq!(ids.iter().collect::<HashSet<_>>().len(), b, "repeat within a batch");
                for (slot, &id) in ids.iter().enumerate() {
                    let base = ((batch * d + dom) * b + slot) * k;
                    let (g, p) = (e.images[base], e.images[base + 1]);
                    assert_ne!(g, p);
                    assert_eq!(i64::from(idx.identities[g as usize]), id);
                    assert_eq!(i64::from(idx.identities[p as usize]), id);
                    assert_eq!(idx.domains[g as usize] as usize, dom);
                }
                stream.extend(ids);
            }
            let n = idx.identities_by_domain()[dom].len();
            // The first n of the stream are all different: every identity before any repeats.
            let first: HashSet<_> = stream.iter().take(n).collect();
            assert_eq!(first.len(), n.min(stream.len()));
        }
        assert_eq!(s.splits(&[]).len(), 3);
        assert_eq!(s.splits(&[]).iter().map(|(_, t)| t[0]).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn deterministic_across_threads_and_ranks_partition_the_stream() {
        let idx = index(&[20, 15, 9, 12], 4);
        let single =
            DomainSampler::new(&idx, SamplerConfig { split: SplitMode::Random, meta_test_domains: 2, ..config(4) })
                .unwrap();
        let a = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| single.epoch(3).unwrap());
        let b = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| single.epoch(3).unwrap());
        assert_eq!((a.images.clone(), a.test_domains.clone()), (b.images, b.test_domains));
        assert_ne!(single.epoch(4).unwrap().images, a.images);
        assert_eq!(a.test_domains.len(), 2 * single.len());
        // Two ranks: disjoint batch numbers whose union is the single stream (L = 5 -> padded to 6).
        let per_batch = 4 * 4 * 2;
        let mut union = Vec::new();
        for rank in 0..2 {
            let cfg =
                SamplerConfig { split: SplitMode::Random, meta_test_domains: 2, rank, world_size: 2, ..config(4) };
            let r = DomainSampler::new(&idx, cfg).unwrap();
            let e = r.epoch(3).unwrap();
            assert_eq!(r.len(), 3);
            for (j, &num) in e.batch_numbers.iter().enumerate() {
                union.push((num, e.images[j * per_batch..(j + 1) * per_batch].to_vec()));
            }
        }
        union.sort();
        assert_eq!(union.len(), 6);
        for (num, imgs) in union.iter().take(5) {
            let i = *num as usize;
            assert_eq!(imgs, &a.images[i * per_batch..(i + 1) * per_batch]);
        }
    }

    #[test]
    fn bad_configurations() {
        let idx = index(&[5, 2], 2);
        let err = |cfg: SamplerConfig, idx: &FaceIndex| DomainSampler::new(idx, cfg).err().unwrap().to_string();
        assert!(err(config(3), &idx).contains("domain 'd1' has 2 identities, fewer than ids_per_domain=3"));
        assert!(err(SamplerConfig { meta_test_domains: 2, ..config(1) }, &idx).contains("index has 2 domain(s)"));
        assert!(
            err(SamplerConfig { rank: 2, world_size: 2, ..config(1) }, &idx).contains("rank must lie in 0..world_size")
        );
        assert!(err(SamplerConfig { images_per_id: 1, ..config(1) }, &idx).contains("images_per_id must be >= 2"));
        let single = index(&[3, 3], 1);
        assert!(err(config(1), &single).contains("has 1 image"));
        let one_domain = index(&[4], 2);
        assert!(err(config(1), &one_domain).contains("at least one meta-train"));
    }

    #[test]
    fn images_are_distinct_when_possible() {
        for imgs in [
            IdentityImages::new(vec![vec![10, 11, 12, 13], vec![20, 21]]),
            IdentityImages::new(vec![vec![0, 1, 2, 3], vec![4, 5]]),
        ] {
            let mut rng = Rng::new(0, 0);
            let mut out = Vec::new();
            choose_images(&imgs, 0, 3, &mut rng, &mut out);
            assert_eq!(out.iter().collect::<HashSet<_>>().len(), 3);
            assert!(out.iter().all(|&x| (0..4).contains(&(x % 10))));
            out.clear();
            choose_images(&imgs, 1, 4, &mut rng, &mut out);
            assert_ne!(out[0], out[1]);
            assert_eq!(out.len(), 4);
        }
        assert!(IdentityImages::new(vec![vec![0, 1], vec![2]]).grouped);
        assert!(!IdentityImages::new(vec![vec![1, 0]]).grouped);
    }
}
