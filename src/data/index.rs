//! `FaceIndex`: every image of a multi-domain face dataset with its domain and identity.
//!
//! Identities are scoped by domain: `001` in domain `a` and `001` in domain `b` are two identities,
//! since MFR's domains are different datasets. Numbering is deterministic: domains by sorted name,
//! identities in order of first appearance (for a folder, the sorted walk), so the same input
//! always gives the same indices, and images grouped by identity stay grouped (which lets the
//! sampler compute image indices instead of looking them up).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::{MfrError, Result};
use crate::limits::{check_memory, product};
use crate::rng::{name_key, Rng};

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "pgm", "ppm", "pbm", "pnm", "gif", "tif", "tiff", "bmp"];

/// Paths and names are the OS's own (bytes-faithful): two folders whose names are not valid
/// UTF-8 stay two identities. Everything that orders or keys by them uses their bytes, which for
/// text is the order and the key of the UTF-8 string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaceIndex {
    /// Per image.
    pub paths: Vec<OsString>,
    /// Per image: domain number (index into `domain_names`).
    pub domains: Vec<u32>,
    /// Per image: identity number (index into `identity_names`), unique across domains.
    pub identities: Vec<u32>,
    pub domain_names: Vec<OsString>,
    pub identity_names: Vec<OsString>,
    /// Per identity: its domain.
    pub identity_domains: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DomainSummary {
    pub name: OsString,
    pub identities: usize,
    pub images: usize,
    pub min_images_per_identity: usize,
    pub max_images_per_identity: usize,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(func: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MfrError::data(func, format!("cannot read folder {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| MfrError::data(func, format!("cannot read folder {}: {e}", dir.display())))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn name_of(path: &Path) -> OsString {
    path.file_name().map(OsStr::to_owned).unwrap_or_default()
}

/// The bytes a name or path orders and keys by.
fn bytes(s: &OsStr) -> &[u8] {
    s.as_encoded_bytes()
}

/// A name or path for messages: as is when it is text, each byte that is not UTF-8 as `\xNN`.
pub fn shown(name: &OsStr) -> String {
    let mut out = String::new();
    for chunk in bytes(name).utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Entries of a folder that are symbolic links to nothing.
fn is_dangling_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) && std::fs::metadata(path).is_err()
}

impl FaceIndex {
    /// Builds from per-image (path, domain name, identity name) triples, in the given image order.
    /// Domains are numbered by sorted name, identities by first appearance.
    pub fn from_triples<P, D, I>(func: &str, triples: Vec<(P, D, I)>) -> Result<Self>
    where
        P: Into<OsString>,
        D: Into<OsString>,
        I: Into<OsString>,
    {
        let triples: Vec<(OsString, OsString, OsString)> =
            triples.into_iter().map(|(p, d, i)| (p.into(), d.into(), i.into())).collect();
        if triples.is_empty() {
            return Err(MfrError::data(func, "no images found"));
        }
        let domain_set: BTreeMap<&[u8], u32> = {
            let mut names: Vec<&[u8]> = triples.iter().map(|t| bytes(&t.1)).collect();
            names.sort_unstable();
            names.dedup();
            names.into_iter().enumerate().map(|(i, n)| (n, i as u32)).collect()
        };
        let mut id_set: std::collections::HashMap<(&[u8], &[u8]), u32> = std::collections::HashMap::new();
        let mut index = FaceIndex { domain_names: vec![OsString::new(); domain_set.len()], ..Default::default() };
        for (_, domain, _) in &triples {
            index.domain_names[domain_set[bytes(domain)] as usize].clone_from(domain);
        }
        for (path, domain, identity) in &triples {
            let d = domain_set[bytes(domain)];
            let next = id_set.len() as u32;
            let id = *id_set.entry((bytes(domain), bytes(identity))).or_insert_with(|| {
                index.identity_names.push(identity.clone());
                index.identity_domains.push(d);
                next
            });
            index.domains.push(d);
            index.identities.push(id);
            index.paths.push(path.clone());
        }
        Ok(index)
    }

    /// `<root>/<domain>/<identity>/<image>`; files that are not images (e.g. SOURCE.md) are ignored.
    /// Also returns the symbolic links to nothing that the walk met (shown paths), which it
    /// skips: the caller reports them.
    pub fn from_folder(root: &Path) -> Result<(Self, Vec<String>)> {
        const F: &str = "FaceIndex.from_folder";
        if !root.is_dir() {
            return Err(MfrError::data(F, format!("{} is not a folder", shown(root.as_os_str()))));
        }
        let mut triples = Vec::new();
        let mut dangling = Vec::new();
        let mut entries = |dir: &Path, keep: fn(&Path) -> bool| -> Result<Vec<PathBuf>> {
            let all = sorted_dir(F, dir)?;
            dangling.extend(all.iter().filter(|p| is_dangling_link(p)).map(|p| shown(p.as_os_str())));
            Ok(all.into_iter().filter(|p| keep(p)).collect())
        };
        for domain in entries(root, |p| p.is_dir())? {
            for identity in entries(&domain, |p| p.is_dir())? {
                for image in entries(&identity, |p| p.is_file() && is_image(p))? {
                    triples.push((image.into_os_string(), name_of(&domain), name_of(&identity)));
                }
            }
        }
        if triples.is_empty() {
            return Err(MfrError::data(
                F,
                format!("no images under {} (expected <root>/<domain>/<identity>/<image>)", shown(root.as_os_str())),
            ));
        }
        Ok((Self::from_triples(F, triples)?, dangling))
    }

    /// A list file: one `path domain identity` per line (whitespace separated; blank lines and lines
    /// starting with `#` skipped). Relative paths are taken relative to `root` when given.
    pub fn from_list(list: &Path, root: Option<&Path>) -> Result<Self> {
        const F: &str = "FaceIndex.from_list";
        let text = std::fs::read_to_string(list)
            .map_err(|e| MfrError::data(F, format!("cannot read {}: {e}", list.display())))?;
        let mut triples: Vec<(OsString, OsString, OsString)> = Vec::new();
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() != 3 {
                return Err(MfrError::data(
                    F,
                    format!(
                        "{} line {}: expected 3 fields 'path domain identity', got {}: {line:?}",
                        list.display(),
                        lineno + 1,
                        fields.len()
                    ),
                ));
            }
            let path = match root {
                Some(r) if Path::new(fields[0]).is_relative() => r.join(fields[0]).into_os_string(),
                _ => fields[0].into(),
            };
            triples.push((path, fields[1].into(), fields[2].into()));
        }
        if triples.is_empty() {
            return Err(MfrError::data(F, format!("{} lists no images", list.display())));
        }
        Self::from_triples(F, triples)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn n_domains(&self) -> usize {
        self.domain_names.len()
    }

    pub fn n_identities(&self) -> usize {
        self.identity_names.len()
    }

    /// Per identity, its image indices (ascending).
    pub fn images_by_identity(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.n_identities()];
        for (i, &id) in self.identities.iter().enumerate() {
            out[id as usize].push(i as u32);
        }
        out
    }

    /// Per domain, its identities (ascending).
    pub fn identities_by_domain(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.n_domains()];
        for (id, &d) in self.identity_domains.iter().enumerate() {
            out[d as usize].push(id as u32);
        }
        out
    }

    pub fn summary(&self) -> Vec<DomainSummary> {
        let by_id = self.images_by_identity();
        self.identities_by_domain()
            .iter()
            .enumerate()
            .map(|(d, ids)| {
                let counts: Vec<usize> = ids.iter().map(|&i| by_id[i as usize].len()).collect();
                DomainSummary {
                    name: self.domain_names[d].clone(),
                    identities: ids.len(),
                    images: counts.iter().sum(),
                    min_images_per_identity: counts.iter().copied().min().unwrap_or(0),
                    max_images_per_identity: counts.iter().copied().max().unwrap_or(0),
                }
            })
            .collect()
    }

    /// The images whose `keep(image index)` holds, re-numbered (empty domains and identities vanish).
    pub fn select(&self, func: &str, keep: impl Fn(usize) -> bool) -> Result<Self> {
        let triples: Vec<(OsString, OsString, OsString)> = (0..self.len())
            .filter(|&i| keep(i))
            .map(|i| {
                let id = self.identities[i] as usize;
                (
                    self.paths[i].clone(),
                    self.domain_names[self.domains[i] as usize].clone(),
                    self.identity_names[id].clone(),
                )
            })
            .collect();
        if triples.is_empty() {
            return Err(MfrError::invalid(func, "no images left"));
        }
        Self::from_triples(func, triples)
    }

    /// Keeps identities with at least `min_images` images.
    pub fn filter_min_images(&self, min_images: usize) -> Result<Self> {
        let by_id = self.images_by_identity();
        self.select("FaceIndex.filter", |i| by_id[self.identities[i] as usize].len() >= min_images)
    }

    /// Splits every domain's identities into disjoint train and test sets: `round(test_fraction * n)`
    /// identities of each domain (seeded choice, keyed by domain and identity names) go to test.
    pub fn split_identities(&self, test_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        const F: &str = "FaceIndex.split_identities";
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(MfrError::invalid(F, format!("test_fraction must lie in (0, 1), got {test_fraction}")));
        }
        let mut is_test = vec![false; self.n_identities()];
        for d in 0..self.n_domains() {
            let mut ids: Vec<u32> = self.canonical_identities(F, d)?.into_iter().map(|(id, _)| id).collect();
            let n_test = (test_fraction * ids.len() as f64).round() as usize;
            if n_test == 0 || n_test == ids.len() {
                return Err(MfrError::invalid(
                    F,
                    format!(
                        "domain '{}' has {} identities: test_fraction {test_fraction} leaves one side empty",
                        shown(&self.domain_names[d]),
                        ids.len()
                    ),
                ));
            }
            shuffle(&mut ids, &mut Rng::new(seed, stream_id(&[0x5311, name_key(&[bytes(&self.domain_names[d])])])));
            for &id in &ids[..n_test] {
                is_test[id as usize] = true;
            }
        }
        let train = self.select(F, |i| !is_test[self.identities[i] as usize])?;
        let test = self.select(F, |i| is_test[self.identities[i] as usize])?;
        Ok((train, test))
    }

    /// The identities of `domain` in identity-name order, each with its images in path order
    /// (ties in input order). Every seeded evaluation draw walks this order and keys its random
    /// streams by names, so a draw does not change when a subset or reordering renumbers the data.
    pub fn canonical_identities(&self, func: &str, domain: usize) -> Result<Vec<(u32, Vec<u32>)>> {
        let mut by_id = self.images_by_identity();
        let mut ids = self.domain_identities(func, domain)?;
        ids.sort_by(|&a, &b| bytes(&self.identity_names[a as usize]).cmp(bytes(&self.identity_names[b as usize])));
        Ok(ids
            .into_iter()
            .map(|id| {
                let mut imgs = std::mem::take(&mut by_id[id as usize]);
                imgs.sort_by(|&a, &b| bytes(&self.paths[a as usize]).cmp(bytes(&self.paths[b as usize])));
                (id, imgs)
            })
            .collect())
    }

    /// Random stream of one identity's evaluation draw number `draw` (keyed by names and `tag`).
    fn identity_rng(&self, seed: u64, tag: u64, id: u32, draw: u64) -> Rng {
        let d = &self.domain_names[self.identity_domains[id as usize] as usize];
        Rng::new(seed, stream_id(&[tag, name_key(&[bytes(d), bytes(&self.identity_names[id as usize])]), draw]))
    }

    /// Identification splits of one domain, over the identities with >= 2 images (identity-name
    /// order; the choice keyed by names, `seed` and `draw`): one gallery image per identity and
    /// one probe (the paper's protocol), or, with `all_probes`, every other image as a probe.
    /// Returns `(gallery, probe)` image indices; draw 0 with one probe is [`Self::gallery_probe`].
    pub fn identification_split(
        &self,
        domain: usize,
        seed: u64,
        draw: u64,
        all_probes: bool,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let (mut gallery, mut probe) = (Vec::new(), Vec::new());
        for (id, imgs) in self.canonical_identities("FaceIndex.gallery_probe", domain)? {
            if imgs.len() < 2 {
                continue;
            }
            let mut rng = self.identity_rng(seed, 0x6a11, id, draw);
            let (a, b) = distinct_pair(&mut rng, imgs.len());
            gallery.push(imgs[a]);
            if all_probes {
                probe.extend(imgs.iter().enumerate().filter(|&(k, _)| k != a).map(|(_, &i)| i));
            } else {
                probe.push(imgs[b]);
            }
        }
        Ok((gallery, probe))
    }

    /// The paper's protocol for one domain: one gallery and one probe image per identity with >= 2
    /// images (seeded choice keyed by names). Returns `(gallery, probe)` image indices of equal length.
    pub fn gallery_probe(&self, domain: usize, seed: u64) -> Result<(Vec<u32>, Vec<u32>)> {
        self.identification_split(domain, seed, 0, false)
    }

    /// Verification pairs of one domain: every genuine pair plus `n_impostors` distinct impostor
    /// pairs drawn uniformly (seeded, keyed by the domain's name and walked in canonical order, so
    /// the same images give the same pairs whatever their positions). Returns `(pairs, labels)`;
    /// each pair's first image comes first in canonical order.
    pub fn verification_pairs(
        &self,
        domain: usize,
        n_impostors: usize,
        seed: u64,
    ) -> Result<(Vec<[u32; 2]>, Vec<bool>)> {
        const F: &str = "FaceIndex.verification_pairs";
        let canonical = self.canonical_identities(F, domain)?;
        let n_genuine: u128 =
            canonical.iter().map(|(_, imgs)| (imgs.len() as u128) * (imgs.len() as u128).saturating_sub(1) / 2).sum();
        // Per pair: two u32 indices and a label, and per impostor a hash-set entry while drawing.
        let needed = product(&[n_genuine + n_impostors as u128, 9]) + product(&[n_impostors as u128, 32]);
        check_memory(F, &format!("{n_genuine} genuine and {n_impostors} impostor pairs"), needed)?;
        let mut pairs = Vec::new();
        for (_, imgs) in &canonical {
            for (k, &a) in imgs.iter().enumerate() {
                for &b in &imgs[k + 1..] {
                    pairs.push([a, b]);
                }
            }
        }
        let n_genuine = pairs.len();
        let images: Vec<u32> = canonical.iter().flat_map(|(_, imgs)| imgs.iter().copied()).collect();
        let n = images.len() as u64;
        let n_possible = {
            let total = n * n.saturating_sub(1) / 2;
            total - n_genuine as u64
        };
        if n_impostors as u64 > n_possible {
            return Err(MfrError::invalid(
                F,
                format!(
                    "domain '{}' has only {n_possible} impostor pairs, {n_impostors} requested",
                    shown(&self.domain_names[domain])
                ),
            ));
        }
        let mut rng = Rng::new(seed, stream_id(&[0x7a11, name_key(&[bytes(&self.domain_names[domain])])]));
        let mut seen = std::collections::HashSet::with_capacity(n_impostors);
        while seen.len() < n_impostors {
            // Canonical positions: the pair is the same whatever the images' index numbers are.
            let (a, b) = (rng.below(n) as usize, rng.below(n) as usize);
            let (a, b) = (a.min(b), a.max(b));
            let (ia, ib) = (images[a], images[b]);
            if self.identities[ia as usize] != self.identities[ib as usize] && seen.insert((a, b)) {
                pairs.push([ia, ib]);
            }
        }
        let mut labels = vec![true; n_genuine];
        labels.resize(pairs.len(), false);
        Ok((pairs, labels))
    }

    fn domain_identities(&self, func: &str, domain: usize) -> Result<Vec<u32>> {
        if domain >= self.n_domains() {
            return Err(MfrError::invalid(
                func,
                format!("domain must be < {} (the number of domains), got {domain}", self.n_domains()),
            ));
        }
        Ok(self.identities_by_domain().swap_remove(domain))
    }
}

/// A random-stream number from a tuple of tags, so every use of randomness has its own stream.
pub fn stream_id(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3u64, |h, &p| {
        let mut z = (h ^ p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// Fisher-Yates.
pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Two different positions in `0..n` (`n >= 2`), uniformly.
pub fn distinct_pair(rng: &mut Rng, n: usize) -> (usize, usize) {
    let a = rng.below(n as u64) as usize;
    let mut b = rng.below(n as u64 - 1) as usize;
    if b >= a {
        b += 1;
    }
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> FaceIndex {
        let mut t = Vec::new();
        for (d, ids) in [("b", 3usize), ("a", 2)] {
            for i in 0..ids {
                for k in 0..(i + 1) {
                    t.push((format!("{d}/{i}/{k}.png"), d.to_string(), format!("id{i}")));
                }
            }
        }
        FaceIndex::from_triples("t", t).unwrap()
    }

    #[test]
    fn encodes_sorted_and_scoped_by_domain() {
        let idx = toy();
        assert_eq!(idx.domain_names, vec!["a", "b"]);
        assert_eq!(idx.n_identities(), 5); // id0/id1 exist in both domains but are different people
        assert_eq!(idx.identity_domains, vec![1, 1, 1, 0, 0]); // first appearance: domain b came first
        let s = idx.summary();
        assert_eq!(
            (s[1].identities, s[1].images, s[1].min_images_per_identity, s[1].max_images_per_identity),
            (3, 6, 1, 3)
        );
        let f = idx.filter_min_images(2).unwrap();
        assert_eq!(f.n_identities(), 3);
        assert!(idx.filter_min_images(9).is_err());
    }

    #[test]
    fn pairs_and_protocol() {
        let idx = toy();
        let (pairs, labels) = idx.verification_pairs(1, 5, 0).unwrap();
        assert_eq!(labels.iter().filter(|&&l| l).count(), 1 + 3); // id1: 1 pair, id2: 3 pairs
        assert_eq!(labels.len(), 4 + 5);
        for (p, &l) in pairs.iter().zip(&labels) {
            assert_eq!(idx.identities[p[0] as usize] == idx.identities[p[1] as usize], l);
            assert_eq!(idx.domains[p[0] as usize], 1);
        }
        assert!(idx.verification_pairs(1, 1000, 0).is_err());
        let (g, p) = idx.gallery_probe(1, 3).unwrap();
        assert_eq!(g.len(), 2);
        assert!(g.iter().zip(&p).all(|(a, b)| a != b && idx.identities[*a as usize] == idx.identities[*b as usize]));
    }

    #[test]
    fn split_is_disjoint_and_seeded() {
        let mut t = Vec::new();
        for d in 0..2 {
            for i in 0..10 {
                for k in 0..2 {
                    t.push((format!("{d}/{i}/{k}"), format!("d{d}"), format!("{i}")));
                }
            }
        }
        let idx = FaceIndex::from_triples("t", t).unwrap();
        let (tr, te) = idx.split_identities(0.3, 1).unwrap();
        assert_eq!((tr.n_identities(), te.n_identities()), (14, 6));
        let names = |x: &FaceIndex| -> std::collections::HashSet<OsString> { x.paths.iter().cloned().collect() };
        assert!(names(&tr).is_disjoint(&names(&te)));
        assert_eq!(idx.split_identities(0.3, 1).unwrap().1, te);
        assert_ne!(idx.split_identities(0.3, 2).unwrap().1, te);
    }

    #[cfg(unix)]
    #[test]
    fn folder_names_are_bytes_faithful_and_dangling_links_reported() {
        use std::os::unix::ffi::OsStrExt;
        let root = std::env::temp_dir().join(format!("mfr_names_{}", std::process::id()));
        let dom = root.join(OsStr::from_bytes(b"dom\xfe"));
        for id in [&b"id\xff"[..], b"id\xfe"] {
            let dir = dom.join(OsStr::from_bytes(id));
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..2 {
                std::fs::write(dir.join(format!("{k}.png")), b"x").unwrap();
            }
        }
        std::os::unix::fs::symlink(root.join("nowhere.png"), dom.join(OsStr::from_bytes(b"id\xff")).join("gone.png"))
            .unwrap();
        let (idx, dangling) = FaceIndex::from_folder(&root).unwrap();
        std::fs::remove_dir_all(&root).ok();
        // Two people stay two (a lossy conversion made both `id\u{fffd}`).
        assert_eq!(idx.n_identities(), 2);
        assert_eq!(idx.identity_names, [OsStr::from_bytes(b"id\xfe"), OsStr::from_bytes(b"id\xff")]);
        assert_eq!(shown(&idx.domain_names[0]), "dom\\xfe");
        assert!(idx.paths[0].as_encoded_bytes().ends_with(b"/dom\xfe/id\xfe/0.png"));
        assert_eq!(dangling.len(), 1);
        assert!(dangling[0].ends_with("dom\\xfe/id\\xff/gone.png"), "{dangling:?}");
    }

    /// Evaluation draws follow names, not positions: a reordered index gives the same image pairs,
    /// galleries and splits (compared as paths).
    #[test]
    fn draws_do_not_depend_on_positions() {
        let mut t = Vec::new();
        for d in ["x", "y"] {
            for i in 0..6 {
                for k in 0..(1 + i % 4) {
                    t.push((format!("{d}/{i}/{k}.png"), d.to_string(), format!("p{i}")));
                }
            }
        }
        let a = FaceIndex::from_triples("t", t.clone()).unwrap();
        let mut rev = t.clone();
        rev.reverse();
        let y_only: Vec<_> = t.iter().filter(|x| x.1 == "y").cloned().collect();
        let path_pairs = |idx: &FaceIndex, d: usize| {
            let (p, l) = idx.verification_pairs(d, 20, 3).unwrap();
            let named: Vec<(OsString, OsString, bool)> = p
                .iter()
                .zip(l)
                .map(|(q, l)| (idx.paths[q[0] as usize].clone(), idx.paths[q[1] as usize].clone(), l))
                .collect();
            named
        };
        let split = |idx: &FaceIndex, d: usize, draw: u64, all: bool| {
            let (g, p) = idx.identification_split(d, 5, draw, all).unwrap();
            let names = |v: Vec<u32>| v.into_iter().map(|i| idx.paths[i as usize].clone()).collect::<Vec<_>>();
            (names(g), names(p))
        };
        for other in [FaceIndex::from_triples("t", rev).unwrap(), FaceIndex::from_triples("t", y_only).unwrap()] {
            let d = other.domain_names.iter().position(|n| n == "y").unwrap();
            assert_eq!(path_pairs(&a, 1), path_pairs(&other, d));
            for draw in 0..3 {
                assert_eq!(split(&a, 1, draw, true), split(&other, d, draw, true));
                assert_eq!(split(&a, 1, draw, false), split(&other, d, draw, false));
            }
        }
        // Another seed or draw gives another gallery.
        assert_ne!(split(&a, 1, 0, true), split(&a, 1, 1, true));
        let (g, p) = a.identification_split(1, 5, 0, true).unwrap();
        assert_eq!(g.len(), 4); // identities with >= 2 images
        assert_eq!(g.len() + p.len(), a.domains.iter().filter(|&&d| d == 1).count() - 2);
    }
}
