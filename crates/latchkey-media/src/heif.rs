//! HEIF/HEIC files re-written without their metadata, losslessly: the
//! coded image data is never touched, only the ISO-BMFF boxes around it.
//!
//! What goes (DESIGN §7: EXIF with GPS and thumbnail, XMP):
//! - metadata *items*: `Exif`, `mime` (XMP is `application/rdf+xml`, but no
//!   `mime` item is ever an image) and `uri ` items, and old-style (version
//!   0/1) item entries, which are all MIME-typed. Their entries leave `iinf`,
//!   `iloc`, `iref` and `ipma`;
//! - every byte of `mdat` and `idat` no remaining item points at, so the
//!   removed items' bytes (and anything else hidden between items) read as
//!   zeros;
//! - every top-level box other than `ftyp`, `meta` and `mdat` (`free`,
//!   `uuid`, a `moov` with its own metadata, …) and every child of `meta`
//!   that images do not need (`xml `, `bxml`, `free`, …);
//! - everything after the last box that holds image data: an appended
//!   archive or script is gone, as is trailing `mdat` space.
//!
//! Sizes and offsets never change: `meta` keeps its length (what its
//! children lost becomes one zero-filled `free` box at its end) and other
//! dropped boxes before the last kept one become zero-filled `free` boxes of
//! their own length, so every `iloc` offset stays true without rewriting.
//!
//! Orientation: HEIF turns an image with its `irot`/`imir` properties,
//! which stay; an EXIF `Orientation` tag is informative only (MIAF) and is
//! not what libheif, or this pipeline, goes by. So removing EXIF changes
//! nothing about how the file decodes.
//!
//! The input is hostile: every read is bounds-checked, counts never size
//! an allocation, and a malformed or ambiguous structure (two `meta`
//! boxes, duplicate item IDs, item data outside `mdat`/`idat`, data in
//! another file, item-offset construction, protected items) is an `Err`
//! with the reason, never a panic and never a guess.

use std::collections::BTreeSet;

/// Item types that carry metadata, never pixels.
const METADATA_ITEM_TYPES: [&[u8; 4]; 3] = [b"Exif", b"mime", b"uri "];

/// Children of `meta` an image needs; every other child is dropped.
const META_KEEP: [&[u8; 4]; 9] = [
    b"hdlr", b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat", b"dinf", b"grpl",
];

/// A box type for a message (hostile bytes escaped).
fn name(kind: &[u8; 4]) -> String {
    kind.escape_ascii().to_string()
}

/// One box: where its header starts, where its body starts, where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxAt {
    pub kind: [u8; 4],
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

/// The box whose header starts at `at`, which must end by `limit`.
pub fn box_at(b: &[u8], at: usize, limit: usize) -> Result<BoxAt, String> {
    let limit = limit.min(b.len());
    let short = || format!("a box header at byte {at} runs past its container");
    let head = b
        .get(at..at.checked_add(8).ok_or_else(short)?)
        .ok_or_else(short)?;
    if at + 8 > limit {
        return Err(short());
    }
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let kind = [head[4], head[5], head[6], head[7]];
    let (size, mut header) = match size32 {
        0 => ((limit - at) as u64, 8usize),
        1 => {
            let big = b.get(at + 8..at + 16).ok_or_else(short)?;
            let size = u64::from_be_bytes(big.try_into().map_err(|_| short())?);
            (size, 16)
        }
        n => (u64::from(n), 8),
    };
    if &kind == b"uuid" {
        header += 16;
    }
    let end = usize::try_from(size)
        .ok()
        .and_then(|s| at.checked_add(s))
        .filter(|&end| end <= limit)
        .ok_or_else(|| format!("box {} at byte {at} runs past its container", name(&kind)))?;
    if size < header as u64 {
        return Err(format!(
            "box {} at byte {at} is smaller than its header",
            name(&kind)
        ));
    }
    Ok(BoxAt {
        kind,
        start: at,
        body: at + header,
        end,
    })
}

/// The boxes laid end to end in `b[from..to]`, which they must fill.
pub fn children(b: &[u8], from: usize, to: usize) -> Result<Vec<BoxAt>, String> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let bx = box_at(b, at, to)?;
        at = bx.end;
        out.push(bx);
    }
    Ok(out)
}

/// The top-level boxes, in order, up to the first one that does not fit
/// (whatever follows it is not part of the file), and where that is.
pub fn top_level(b: &[u8]) -> (Vec<BoxAt>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        match box_at(b, at, b.len()) {
            Ok(bx) => {
                at = bx.end;
                out.push(bx);
            }
            Err(_) => break,
        }
    }
    (out, at)
}

/// A bounds-checked reader over `b[pos..end]`.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], pos: usize, end: usize) -> Self {
        Self {
            b,
            pos,
            end: end.min(b.len()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let stop = self
            .pos
            .checked_add(n)
            .filter(|&s| s <= self.end)
            .ok_or_else(|| format!("a field at byte {} runs past its box", self.pos))?;
        let s = &self.b[self.pos..stop];
        self.pos = stop;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// An unsigned field of 0, 2, 4 or 8 bytes (0: absent, reads as 0).
    fn uint(&mut self, size: u8) -> Result<u64, String> {
        match size {
            0 => Ok(0),
            2 => Ok(u64::from(self.u16()?)),
            4 => Ok(u64::from(self.u32()?)),
            8 => {
                let s = self.take(8)?;
                Ok(u64::from_be_bytes(s.try_into().map_err(|_| "short field")?))
            }
            n => Err(format!("a {n}-byte field")),
        }
    }

    /// A 16- or 32-bit item ID.
    fn id(&mut self, wide: bool) -> Result<u32, String> {
        if wide {
            self.u32()
        } else {
            self.u16().map(u32::from)
        }
    }

    fn done(&self) -> bool {
        self.pos == self.end
    }
}

fn put_uint(out: &mut Vec<u8>, size: u8, v: u64) -> Result<(), String> {
    match size {
        0 if v == 0 => {}
        2 => out.extend_from_slice(&u16::try_from(v).map_err(|e| e.to_string())?.to_be_bytes()),
        4 => out.extend_from_slice(&u32::try_from(v).map_err(|e| e.to_string())?.to_be_bytes()),
        8 => out.extend_from_slice(&v.to_be_bytes()),
        n => return Err(format!("{v} does not fit a {n}-byte field")),
    }
    Ok(())
}

fn put_id(out: &mut Vec<u8>, wide: bool, id: u32) -> Result<(), String> {
    put_uint(out, if wide { 4 } else { 2 }, u64::from(id))
}

/// A box of `kind` around `body` (32-bit size).
fn boxed(kind: &[u8; 4], body: &[u8]) -> Result<Vec<u8>, String> {
    let size = u32::try_from(body.len() + 8).map_err(|_| "a box over 4 GiB")?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    Ok(out)
}

/// Appends box `bx` of `b` to `out` as it is, except that a size of 0 ("to
/// the end of its container") becomes its length: in the re-written `meta`
/// the box may no longer be last (the `free` box for what was dropped
/// follows), and it would swallow that. Found by the `image_headers` fuzz
/// target: stripping such a file a second time zeroed the `free` box's
/// header inside the swallowing `idat`.
fn copy_box(out: &mut Vec<u8>, b: &[u8], bx: &BoxAt) -> Result<(), String> {
    let at = out.len();
    out.extend_from_slice(&b[bx.start..bx.end]);
    if out[at..at + 4] == [0; 4] {
        let size = u32::try_from(bx.end - bx.start).map_err(|_| "a box over 4 GiB")?;
        out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }
    Ok(())
}

/// Writes a zero-filled `free` box over `out[start..end]` (at least 8
/// bytes), so whatever was there is gone and the length stays.
fn blank(out: &mut [u8], start: usize, end: usize) {
    let len = end - start;
    out[start..end].fill(0);
    if let Ok(size) = u32::try_from(len) {
        out[start..start + 4].copy_from_slice(&size.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(b"free");
    } else {
        // Only reachable with a 64-bit box, whose header had 16 bytes.
        out[start..start + 4].copy_from_slice(&1u32.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(b"free");
        out[start + 8..start + 16].copy_from_slice(&(len as u64).to_be_bytes());
    }
}

// ---------------------------------------------------------------- iloc

/// One extent of an item's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub index: u64,
    pub offset: u64,
    pub length: u64,
}

/// One item's entry in `iloc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub id: u32,
    /// The 16-bit field holding the construction method (versions 1, 2).
    pub method_field: u16,
    pub data_reference_index: u16,
    pub base_offset: u64,
    pub extents: Vec<Extent>,
}

impl Location {
    /// 0: file offsets; 1: offsets into `idat`; 2: into another item.
    pub fn construction_method(&self) -> u16 {
        self.method_field & 0x0F
    }
}

/// The item location box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iloc {
    pub version: u8,
    pub flags: [u8; 3],
    /// offset_size, length_size, base_offset_size, index_size (or reserved).
    pub sizes: [u8; 2],
    pub items: Vec<Location>,
}

impl Iloc {
    fn offset_size(&self) -> u8 {
        self.sizes[0] >> 4
    }
    fn length_size(&self) -> u8 {
        self.sizes[0] & 0x0F
    }
    fn base_offset_size(&self) -> u8 {
        self.sizes[1] >> 4
    }
    fn index_size(&self) -> u8 {
        if self.version >= 1 {
            self.sizes[1] & 0x0F
        } else {
            0
        }
    }

    pub fn parse(b: &[u8], bx: &BoxAt) -> Result<Iloc, String> {
        let mut r = Reader::new(b, bx.body, bx.end);
        let version = r.u8()?;
        if version > 2 {
            return Err(format!("iloc version {version}"));
        }
        let f = r.take(3)?;
        let flags = [f[0], f[1], f[2]];
        let s = r.take(2)?;
        let mut iloc = Iloc {
            version,
            flags,
            sizes: [s[0], s[1]],
            items: Vec::new(),
        };
        for size in [
            iloc.offset_size(),
            iloc.length_size(),
            iloc.base_offset_size(),
            iloc.index_size(),
        ] {
            if !matches!(size, 0 | 4 | 8) {
                return Err(format!("iloc field size {size}"));
            }
        }
        let count = if version < 2 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        };
        for _ in 0..count {
            let id = r.id(version == 2)?;
            let method_field = if version >= 1 { r.u16()? } else { 0 };
            let data_reference_index = r.u16()?;
            let base_offset = r.uint(iloc.base_offset_size())?;
            let extent_count = r.u16()?;
            let mut extents = Vec::new();
            for _ in 0..extent_count {
                extents.push(Extent {
                    index: r.uint(iloc.index_size())?,
                    offset: r.uint(iloc.offset_size())?,
                    length: r.uint(iloc.length_size())?,
                });
            }
            iloc.items.push(Location {
                id,
                method_field,
                data_reference_index,
                base_offset,
                extents,
            });
        }
        if !r.done() {
            return Err("iloc has bytes after its last item".into());
        }
        Ok(iloc)
    }

    /// The box, with every field as wide as it was.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut body = vec![self.version];
        body.extend_from_slice(&self.flags);
        body.extend_from_slice(&self.sizes);
        let count = self.items.len() as u64;
        put_uint(&mut body, if self.version < 2 { 2 } else { 4 }, count)?;
        for item in &self.items {
            put_id(&mut body, self.version == 2, item.id)?;
            if self.version >= 1 {
                body.extend_from_slice(&item.method_field.to_be_bytes());
            }
            body.extend_from_slice(&item.data_reference_index.to_be_bytes());
            put_uint(&mut body, self.base_offset_size(), item.base_offset)?;
            put_uint(&mut body, 2, item.extents.len() as u64)?;
            for e in &item.extents {
                put_uint(&mut body, self.index_size(), e.index)?;
                put_uint(&mut body, self.offset_size(), e.offset)?;
                put_uint(&mut body, self.length_size(), e.length)?;
            }
        }
        boxed(b"iloc", &body)
    }
}

// ---------------------------------------------------------------- iinf

/// One `infe` entry: its ID, whether it is metadata, and its box.
struct ItemInfo {
    id: u32,
    metadata: bool,
    protected: bool,
    bx: BoxAt,
}

fn parse_infe(b: &[u8], bx: &BoxAt) -> Result<ItemInfo, String> {
    if &bx.kind != b"infe" {
        return Err(format!("iinf holds a {} box", name(&bx.kind)));
    }
    let mut r = Reader::new(b, bx.body, bx.end);
    let version = r.u8()?;
    r.take(3)?;
    let (id, protection, item_type) = match version {
        // Old-style entries name a MIME type, never an image coding.
        0 | 1 => (u32::from(r.u16()?), r.u16()?, None),
        2 | 3 => {
            let id = r.id(version == 3)?;
            let protection = r.u16()?;
            let t = r.take(4)?;
            (id, protection, Some([t[0], t[1], t[2], t[3]]))
        }
        v => return Err(format!("infe version {v}")),
    };
    let metadata = item_type.is_none_or(|t| METADATA_ITEM_TYPES.contains(&&t));
    Ok(ItemInfo {
        id,
        metadata,
        protected: protection != 0,
        bx: *bx,
    })
}

// ---------------------------------------------------------------- iref, ipma

/// `iref` without references from removed items, or to them; `None` when
/// nothing is left.
fn rebuild_iref(b: &[u8], bx: &BoxAt, removed: &BTreeSet<u32>) -> Result<Option<Vec<u8>>, String> {
    let mut r = Reader::new(b, bx.body, bx.end);
    let version = r.u8()?;
    if version > 1 {
        return Err(format!("iref version {version}"));
    }
    r.take(3)?;
    let wide = version == 1;
    let mut body = b[bx.body..bx.body + 4].to_vec();
    let mut any = false;
    for child in children(b, bx.body + 4, bx.end)? {
        if &child.kind == b"uuid" {
            return Err("iref holds a uuid box".into());
        }
        let mut r = Reader::new(b, child.body, child.end);
        let from = r.id(wide)?;
        let count = r.u16()?;
        let mut to = Vec::new();
        for _ in 0..count {
            to.push(r.id(wide)?);
        }
        if !r.done() {
            return Err("an iref entry has bytes after its references".into());
        }
        to.retain(|id| !removed.contains(id));
        if removed.contains(&from) || to.is_empty() {
            continue;
        }
        let mut entry = Vec::new();
        put_id(&mut entry, wide, from)?;
        put_uint(&mut entry, 2, to.len() as u64)?;
        for id in to {
            put_id(&mut entry, wide, id)?;
        }
        body.extend_from_slice(&boxed(&child.kind, &entry)?);
        any = true;
    }
    if any {
        Ok(Some(boxed(b"iref", &body)?))
    } else {
        Ok(None)
    }
}

/// `ipma` without the entries of removed items.
fn rebuild_ipma(b: &[u8], bx: &BoxAt, removed: &BTreeSet<u32>) -> Result<Vec<u8>, String> {
    let mut r = Reader::new(b, bx.body, bx.end);
    let version = r.u8()?;
    let f = r.take(3)?;
    let wide_index = f[2] & 1 == 1;
    let count = r.u32()?;
    let mut kept = Vec::new();
    let mut n = 0u32;
    for _ in 0..count {
        let start = r.pos;
        let id = r.id(version >= 1)?;
        let associations = r.u8()?;
        r.take(usize::from(associations) * if wide_index { 2 } else { 1 })?;
        if !removed.contains(&id) {
            kept.extend_from_slice(&b[start..r.pos]);
            n += 1;
        }
    }
    if !r.done() {
        return Err("ipma has bytes after its last entry".into());
    }
    let mut body = b[bx.body..bx.body + 4].to_vec();
    body.extend_from_slice(&n.to_be_bytes());
    body.extend_from_slice(&kept);
    boxed(b"ipma", &body)
}

fn rebuild_iprp(b: &[u8], bx: &BoxAt, removed: &BTreeSet<u32>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    for child in children(b, bx.body, bx.end)? {
        match &child.kind {
            b"ipco" => body.extend_from_slice(&b[child.start..child.end]),
            b"ipma" => body.extend_from_slice(&rebuild_ipma(b, &child, removed)?),
            // Nothing else belongs in iprp.
            _ => {}
        }
    }
    boxed(b"iprp", &body)
}

// ---------------------------------------------------------------- the file

/// Half-open byte ranges, merged.
fn merged(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Zeroes `out[from..to]` outside `keep` (merged, absolute ranges).
fn zero_outside(out: &mut [u8], from: usize, to: usize, keep: &[(usize, usize)]) {
    let mut at = from;
    for &(s, e) in keep {
        let (s, e) = (s.clamp(from, to), e.clamp(from, to));
        if s > at {
            out[at..s].fill(0);
        }
        at = at.max(e);
    }
    if at < to {
        out[at..to].fill(0);
    }
}

/// Where an extent's bytes are: `[start, end)` relative to the file
/// (method 0) or to the `idat` body (method 1).
fn extent_range(base: u64, e: &Extent) -> Result<(usize, usize), String> {
    if e.length == 0 {
        return Err("an item extent without a length".into());
    }
    let start = base
        .checked_add(e.offset)
        .ok_or("an item extent's offset overflows")?;
    let end = start
        .checked_add(e.length)
        .ok_or("an item extent's length overflows")?;
    let conv = |v: u64| usize::try_from(v).map_err(|_| "an item extent past the file".to_string());
    Ok((conv(start)?, conv(end)?))
}

/// The HEIF file without its metadata (see the module docs). `Err` says
/// why the file cannot be re-written safely.
pub fn strip_heif(b: &[u8]) -> Result<Vec<u8>, String> {
    let (top, _) = top_level(b);
    if top.first().map(|t| &t.kind) != Some(b"ftyp") {
        return Err("the file does not start with an ftyp box".into());
    }
    let metas: Vec<&BoxAt> = top.iter().filter(|t| &t.kind == b"meta").collect();
    let meta = match metas.as_slice() {
        [m] => **m,
        [] => return Err("no meta box".into()),
        _ => return Err("more than one meta box".into()),
    };
    let mut r = Reader::new(b, meta.body, meta.end);
    if r.u8()? != 0 {
        return Err("meta box version is not 0".into());
    }
    r.take(3)?;
    let parts = children(b, meta.body + 4, meta.end)?;
    let one = |kind: &[u8; 4]| -> Result<Option<BoxAt>, String> {
        let mut found = parts.iter().filter(|p| &p.kind == kind);
        let first = found.next().copied();
        if found.next().is_some() {
            return Err(format!("more than one {} box", name(kind)));
        }
        Ok(first)
    };
    let iinf = one(b"iinf")?.ok_or("no iinf box")?;
    let iloc_box = one(b"iloc")?.ok_or("no iloc box")?;
    let pitm = one(b"pitm")?.ok_or("no pitm box")?;
    let idat = one(b"idat")?;
    one(b"iref")?;
    one(b"iprp")?;

    // Items: which stay.
    let mut r = Reader::new(b, iinf.body, iinf.end);
    let iinf_version = r.u8()?;
    r.take(3)?;
    let count = if iinf_version == 0 {
        u32::from(r.u16()?)
    } else {
        r.u32()?
    };
    let infos = children(b, r.pos, iinf.end)?
        .iter()
        .map(|bx| parse_infe(b, bx))
        .collect::<Result<Vec<_>, _>>()?;
    if infos.len() as u64 != u64::from(count) {
        return Err("iinf's entry count does not match its entries".into());
    }
    let mut ids = BTreeSet::new();
    for i in &infos {
        if !ids.insert(i.id) {
            return Err(format!("item {} is defined twice", i.id));
        }
    }
    let kept: BTreeSet<u32> = infos.iter().filter(|i| !i.metadata).map(|i| i.id).collect();
    if infos.iter().any(|i| !i.metadata && i.protected) {
        return Err("the image is protected (encrypted)".into());
    }
    let mut r = Reader::new(b, pitm.body, pitm.end);
    let pitm_version = r.u8()?;
    r.take(3)?;
    let primary = r.id(pitm_version >= 1)?;
    if !kept.contains(&primary) {
        return Err("the primary item is not an image".into());
    }

    let mut iloc = Iloc::parse(b, &iloc_box)?;
    let mut located = BTreeSet::new();
    for item in &iloc.items {
        if !located.insert(item.id) {
            return Err(format!("item {} is located twice", item.id));
        }
    }
    // An entry of an item that is not kept (metadata, or no item at all)
    // goes, and with it every claim on its bytes.
    let removed: BTreeSet<u32> = ids
        .union(&located)
        .copied()
        .filter(|id| !kept.contains(id))
        .collect();
    iloc.items.retain(|item| kept.contains(&item.id));

    // Where the kept items' bytes are.
    let mdats: Vec<&BoxAt> = top.iter().filter(|t| &t.kind == b"mdat").collect();
    let (mut in_file, mut in_idat) = (Vec::new(), Vec::new());
    for item in &iloc.items {
        if item.data_reference_index != 0 {
            return Err(format!("item {}'s data is in another file", item.id));
        }
        for e in &item.extents {
            let (s, end) = extent_range(item.base_offset, e)?;
            match item.construction_method() {
                0 => {
                    if !mdats.iter().any(|m| s >= m.body && end <= m.end) {
                        return Err(format!("item {}'s data is outside mdat", item.id));
                    }
                    in_file.push((s, end));
                }
                1 => {
                    let idat = idat.ok_or("an item in idat, but no idat box")?;
                    if end > idat.end - idat.body {
                        return Err(format!("item {}'s data is outside idat", item.id));
                    }
                    in_idat.push((idat.body + s, idat.body + end));
                }
                2 => {
                    return Err(format!(
                        "item {} is built from another item's data (unsupported)",
                        item.id
                    ));
                }
                m => return Err(format!("item {}: construction method {m}", item.id)),
            }
        }
    }
    let in_file = merged(in_file);
    let in_idat = merged(in_idat);

    // The new meta: its kept children, then a free box for what is left.
    let mut new_meta = b[meta.start..meta.body + 4].to_vec();
    for part in &parts {
        if !META_KEEP.contains(&&part.kind) {
            continue;
        }
        match &part.kind {
            b"iinf" => {
                let mut body = b[iinf.body..iinf.body + 4].to_vec();
                let n = infos.iter().filter(|i| kept.contains(&i.id)).count() as u64;
                put_uint(&mut body, if iinf_version == 0 { 2 } else { 4 }, n)?;
                for i in infos.iter().filter(|i| kept.contains(&i.id)) {
                    body.extend_from_slice(&b[i.bx.start..i.bx.end]);
                }
                new_meta.extend_from_slice(&boxed(b"iinf", &body)?);
            }
            b"iloc" => new_meta.extend_from_slice(&iloc.encode()?),
            b"iref" => {
                if let Some(iref) = rebuild_iref(b, part, &removed)? {
                    new_meta.extend_from_slice(&iref);
                }
            }
            b"iprp" => new_meta.extend_from_slice(&rebuild_iprp(b, part, &removed)?),
            b"idat" => {
                // Copied, then zeroed outside the kept items' ranges
                // (moved from the file's positions to the copy's).
                let at = new_meta.len();
                copy_box(&mut new_meta, b, part)?;
                let moved = |p: usize| p - part.start + at;
                let keep: Vec<_> = in_idat.iter().map(|&(s, e)| (moved(s), moved(e))).collect();
                zero_outside(&mut new_meta, moved(part.body), moved(part.end), &keep);
            }
            _ => copy_box(&mut new_meta, b, part)?,
        }
    }
    let meta_len = meta.end - meta.start;
    let pad = meta_len
        .checked_sub(new_meta.len())
        .ok_or("the re-written meta box grew")?;
    match pad {
        0 => {}
        1..=7 => return Err("no room for a free box in meta".into()),
        _ => {
            let at = new_meta.len();
            new_meta.resize(meta_len, 0);
            blank(&mut new_meta, at, meta_len);
        }
    }

    // The file: up to the last box an image needs, the rest blanked.
    let needed = |t: &BoxAt| match &t.kind {
        b"ftyp" | b"meta" => true,
        b"mdat" => in_file.iter().any(|&(s, e)| s >= t.body && e <= t.end),
        _ => false,
    };
    let last = top.iter().rposition(needed).ok_or("no box is needed")?;
    let mut end = top[last].end;
    if &top[last].kind == b"mdat" {
        // Its unreferenced tail is not worth serving.
        let used = in_file
            .iter()
            .filter(|&&(s, _)| s >= top[last].body)
            .map(|&(_, e)| e)
            .max()
            .unwrap_or(top[last].body);
        end = used;
    }
    let mut out = b[..end].to_vec();
    for t in &top[..=last] {
        match &t.kind {
            b"ftyp" => {}
            b"meta" => out[t.start..t.end].copy_from_slice(&new_meta),
            b"mdat" if needed(t) => {
                let stop = t.end.min(end);
                zero_outside(&mut out, t.body, stop, &in_file);
            }
            _ => blank(&mut out, t.start, t.end),
        }
    }
    // The last mdat's size, when its tail went.
    let t = top[last];
    if &t.kind == b"mdat" && end != t.end {
        let size = end - t.start;
        let size32 =
            u32::from_be_bytes([b[t.start], b[t.start + 1], b[t.start + 2], b[t.start + 3]]);
        if size32 == 1 {
            out[t.start + 8..t.start + 16].copy_from_slice(&(size as u64).to_be_bytes());
        } else if let Ok(s) = u32::try_from(size) {
            out[t.start..t.start + 4].copy_from_slice(&s.to_be_bytes());
        }
        // A size of 0 (to the end of the file) that does not fit 32 bits
        // stays 0: the file now ends where the box does.
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_headers_are_bounds_checked() {
        assert!(box_at(b"\0\0\0\x10free", 0, 12).is_err(), "past the end");
        assert!(
            box_at(b"\0\0\0\x04free", 0, 8).is_err(),
            "smaller than its header"
        );
        assert!(box_at(b"\0\0\0\x01free\xff\xff\xff\xff\xff\xff\xff\xff", 0, 16).is_err());
        assert_eq!(
            box_at(b"\0\0\0\0free1234", 0, 12).unwrap().end,
            12,
            "size 0: to the end of the container"
        );
        let (top, stop) = top_level(b"\0\0\0\x08free\0\0\0\x09mdat");
        assert_eq!((top.len(), stop), (1, 8), "what does not fit ends the file");
    }

    #[test]
    fn iloc_round_trips() {
        for version in [0u8, 1, 2] {
            let iloc = Iloc {
                version,
                flags: [0; 3],
                sizes: [0x44, if version > 0 { 0x44 } else { 0x40 }],
                items: vec![Location {
                    id: 7,
                    method_field: u16::from(version > 0),
                    data_reference_index: 0,
                    base_offset: 16,
                    extents: vec![Extent {
                        index: if version > 0 { 3 } else { 0 },
                        offset: 100,
                        length: 50,
                    }],
                }],
            };
            let bytes = iloc.encode().unwrap();
            let bx = box_at(&bytes, 0, bytes.len()).unwrap();
            assert_eq!(Iloc::parse(&bytes, &bx).unwrap(), iloc, "version {version}");
        }
    }

    /// A fuzz-found file (`fuzz/seeds/image_headers/heif-idat-size-0`):
    /// its `idat` has size 0 and ends `meta`; stripping drops 36 bytes of
    /// `iloc`, so a `free` box follows the copied `idat`.
    #[test]
    fn a_box_sized_to_its_container_end_gets_its_length_and_strips_once() {
        let b = include_bytes!("../../../fuzz/seeds/image_headers/heif-idat-size-0");
        let idat = |b: &[u8]| {
            let (top, _) = top_level(b);
            let meta = top.iter().find(|t| &t.kind == b"meta").copied().unwrap();
            let kids = children(b, meta.body + 4, meta.end).unwrap();
            let idat = kids.iter().find(|c| &c.kind == b"idat").copied().unwrap();
            (idat, kids.last().unwrap().kind)
        };
        let (before, _) = idat(b);
        assert_eq!(
            b[before.start..before.start + 4],
            [0; 4],
            "the input's idat has size 0"
        );
        let once = strip_heif(b).unwrap();
        let (after, last) = idat(&once);
        assert_eq!(after.end - after.start, before.end - before.start);
        assert_eq!(&last, b"free", "the padding is its own box");
        assert_eq!(strip_heif(&once).unwrap(), once);
    }

    #[test]
    fn ranges_merge_and_zeroing_spares_them() {
        assert_eq!(
            merged(vec![(5, 8), (0, 2), (1, 3), (8, 9)]),
            [(0, 3), (5, 9)]
        );
        let mut v = vec![1u8; 10];
        zero_outside(&mut v, 1, 9, &[(0, 3), (5, 6)]);
        assert_eq!(v, [1, 1, 1, 0, 0, 1, 0, 0, 0, 1]);
    }
}
