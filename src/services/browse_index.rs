//! The indexes of a browsable export.
//!
//! The exact-value index (`filter.<column>=value`): for every column whose
//! values are short and repeat (channel, status, customer, HTTP status, …), where each value
//! stands, as one row per value and block of rows holding the offsets of its rows in that block.
//! A filter then reads a few such rows and fetches the rows they name, instead of reading every
//! row of the export (a rare customer among 200,000 rows took 1.4 s on PostgreSQL).
//!
//! Columns of long values (bodies) or of values that hardly repeat (ids, times, paths) are left
//! out: indexing them would cost a row per row, and they are found by reading as before. A block
//! is 65,536 rows, so an offset is a `u16` and a common value costs 2 bytes a row.
//!
//! The text index (`q`): per block of 1,024 rows, a Bloom filter of the trigrams of the rows'
//! lowercased text, as ClickHouse's `ngrambf_v1` skip index keeps per granule. A search reads
//! only the blocks whose filter holds every trigram of its text, so text the export does not
//! hold is answered from the filters alone (8 KiB per block) instead of by reading every row,
//! while a common word still ends its page in the first blocks. A full index of trigrams (FTS5,
//! `pg_trgm`) would be exact, but it indexed 7,000 to 12,500 rows/s where this costs a hash per
//! byte on the thread that parses the file.

use std::collections::HashMap;

use entity::{export_cell, export_gram};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect};

/// Rows per block: offsets fit a `u16`.
pub const BLOCK_ROWS: usize = 65_536;
/// A value longer than this leaves its column out.
const MAX_VALUE_BYTES: usize = 64;
/// Marks an indexed column.
const COLUMN_MARK: i64 = -1;

/// Where each value of one column stands in the current block, while it is still indexed.
type Column = HashMap<String, Vec<u16>>;

/// One stored row of the index.
pub struct Posting {
    pub col: i32,
    pub value: String,
    pub block: i64,
    pub offsets: Vec<u16>,
}

/// Builds the index of rows pushed in file order, a block at a time: memory holds one block's
/// offsets of the columns still indexed.
pub struct CellIndexer {
    block_rows: usize,
    /// Per column; `None` once it is left out.
    columns: Vec<Option<Column>>,
    /// The block being filled and how many of its rows are in.
    block: i64,
    filled: usize,
    /// Columns left out after a block of theirs was handed out: their rows are deleted at the end.
    withdrawn: Vec<i32>,
}

impl CellIndexer {
    pub fn new(columns: usize) -> Self {
        Self::with_block(columns, BLOCK_ROWS)
    }

    /// With blocks of `block_rows` (at most 65,536) rows: the tests use small ones.
    pub fn with_block(columns: usize, block_rows: usize) -> Self {
        assert!((1..=BLOCK_ROWS).contains(&block_rows), "offsets are u16");
        Self { block_rows, columns: (0..columns).map(|_| Some(Column::new())).collect(), block: 0, filled: 0, withdrawn: Vec::new() }
    }

    /// Adds the next row; returns the block's postings when this row filled it.
    pub fn push<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> Option<Vec<Posting>> {
        let offset = self.filled as u16;
        // More distinct values than this in a block: an index of the column would be as big as
        // the column.
        let most = self.block_rows / 4;
        let block = self.block;
        for (col, cell) in cells.into_iter().enumerate() {
            let Some(slot) = self.columns.get_mut(col) else { break };
            let Some(values) = slot else { continue };
            let too_many = values.len() >= most && !values.contains_key(cell);
            if cell.len() > MAX_VALUE_BYTES || too_many {
                *slot = None;
                if block > 0 {
                    self.withdrawn.push(col as i32);
                }
                continue;
            }
            match values.get_mut(cell) {
                Some(offsets) => offsets.push(offset),
                None => {
                    values.insert(cell.to_owned(), vec![offset]);
                }
            }
        }
        self.filled += 1;
        (self.filled == self.block_rows).then(|| self.take_block())
    }

    /// The last block's postings, one mark per indexed column, and the columns whose earlier
    /// postings are to be deleted.
    pub fn finish(mut self) -> (Vec<Posting>, Vec<i32>) {
        let mut postings = if self.filled > 0 { self.take_block() } else { Vec::new() };
        for (col, values) in self.columns.iter().enumerate() {
            if values.is_some() {
                postings.push(Posting { col: col as i32, value: String::new(), block: COLUMN_MARK, offsets: Vec::new() });
            }
        }
        (postings, self.withdrawn)
    }

    fn take_block(&mut self) -> Vec<Posting> {
        let block = self.block;
        let mut postings = Vec::new();
        for (col, values) in self.columns.iter_mut().enumerate() {
            let Some(values) = values else { continue };
            postings.extend(values.drain().map(|(value, offsets)| Posting { col: col as i32, value, block, offsets }));
        }
        self.block += 1;
        self.filled = 0;
        postings
    }
}

/// Stores postings of export `export_id`.
pub async fn store(conn: &impl ConnectionTrait, export_id: &str, postings: Vec<Posting>) -> Result<(), DbErr> {
    // Five values a row, well under either backend's limit on bound values.
    const ROWS_PER_STATEMENT: usize = 2_000;
    let mut rows = postings.into_iter().map(|p| {
        export_cell::Model {
            export_id: export_id.to_owned(),
            col: p.col,
            value: p.value,
            block: p.block,
            positions: p.offsets.iter().flat_map(|o| o.to_le_bytes()).collect(),
        }
        .into_active_model()
    });
    loop {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        export_cell::Entity::insert_many(chunk).exec_without_returning(conn).await?;
    }
}

/// Deletes the postings of `columns` (left out after some of theirs were stored).
pub async fn withdraw(conn: &impl ConnectionTrait, export_id: &str, columns: Vec<i32>) -> Result<(), DbErr> {
    if !columns.is_empty() {
        export_cell::Entity::delete_many()
            .filter(export_cell::Column::ExportId.eq(export_id))
            .filter(export_cell::Column::Col.is_in(columns))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Deletes the whole index of some exports.
pub async fn delete(conn: &impl ConnectionTrait, export_ids: Vec<String>) -> Result<(), DbErr> {
    export_gram::Entity::delete_many().filter(export_gram::Column::ExportId.is_in(export_ids.clone())).exec(conn).await?;
    export_cell::Entity::delete_many().filter(export_cell::Column::ExportId.is_in(export_ids)).exec(conn).await?;
    Ok(())
}

/// Which of `columns` the export's index covers.
pub async fn indexed(conn: &impl ConnectionTrait, export_id: &str, columns: &[usize]) -> Result<Vec<usize>, DbErr> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let marked: Vec<i32> = export_cell::Entity::find()
        .select_only()
        .column(export_cell::Column::Col)
        .filter(export_cell::Column::ExportId.eq(export_id))
        .filter(export_cell::Column::Block.eq(COLUMN_MARK))
        .filter(export_cell::Column::Col.is_in(columns.iter().map(|c| *c as i32)))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(columns.iter().copied().filter(|c| marked.contains(&(*c as i32))).collect())
}

/// The positions, in order, of the rows of block `block` whose cells match every one of `exact`
/// (indexed columns and their values).
pub async fn block_positions(conn: &impl ConnectionTrait, export_id: &str, exact: &[(usize, &str)], block: i64) -> Result<Vec<i64>, DbErr> {
    let mut lists: Vec<Vec<u16>> = Vec::with_capacity(exact.len());
    for (col, value) in exact {
        let found: Option<Vec<u8>> = export_cell::Entity::find()
            .select_only()
            .column(export_cell::Column::Positions)
            .filter(export_cell::Column::ExportId.eq(export_id))
            .filter(export_cell::Column::Col.eq(*col as i32))
            .filter(export_cell::Column::Value.eq(*value))
            .filter(export_cell::Column::Block.eq(block))
            .into_tuple()
            .one(conn)
            .await?;
        match found {
            Some(bytes) => lists.push(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()),
            None => return Ok(Vec::new()),
        }
    }
    let base = block * BLOCK_ROWS as i64;
    Ok(intersect(lists).into_iter().map(|o| base + i64::from(o)).collect())
}

/// The blocks, from `first` on, holding `value` in column `col`.
pub async fn blocks_with(conn: &impl ConnectionTrait, export_id: &str, (col, value): (usize, &str), first: i64) -> Result<Vec<i64>, DbErr> {
    export_cell::Entity::find()
        .select_only()
        .column(export_cell::Column::Block)
        .filter(export_cell::Column::ExportId.eq(export_id))
        .filter(export_cell::Column::Col.eq(col as i32))
        .filter(export_cell::Column::Value.eq(value))
        .filter(export_cell::Column::Block.gte(first))
        .order_by_asc(export_cell::Column::Block)
        .into_tuple()
        .all(conn)
        .await
}

/// The offsets in every one of `lists` (each ascending), ascending.
fn intersect(mut lists: Vec<Vec<u16>>) -> Vec<u16> {
    lists.sort_by_key(Vec::len);
    let mut lists = lists.into_iter();
    let Some(mut common) = lists.next() else { return Vec::new() };
    for list in lists {
        common.retain(|o| list.binary_search(o).is_ok());
    }
    common
}

/// Rows per block of the text index: the fewer, the fewer trigrams a filter holds (so the fewer
/// blocks a search for absent text reads), the more filters every search reads.
pub const GRAM_BLOCK_ROWS: i64 = 1_024;
/// Bits of one block's filter (8 KiB). 1,024 rows of 1 KiB of varied JSON hold some 30,000
/// distinct trigrams: 60% of the bits set, so text of 5 trigrams (10 bits) passes a block that
/// lacks it 0.6% of the time; the benchmark's rows hold 2,200 (6%).
pub const GRAM_BITS: usize = 65_536;

/// A trigram's two bits: the top 16 bits of its three bytes times two odd constants (Fibonacci
/// hashing). This is the stored format: changing it means indexing the exports again.
fn gram_bits(gram: &[u8]) -> [usize; 2] {
    let x = u64::from(gram[0]) | u64::from(gram[1]) << 8 | u64::from(gram[2]) << 16;
    [(x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize, (x.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) >> 48) as usize]
}

/// One block's filter, or (block -1, no bits) the mark that the export has a text index.
pub struct GramBlock {
    pub block: i64,
    pub bits: Vec<u8>,
}

/// Builds the text index of rows pushed in file order, one block's filter at a time.
pub struct GramIndexer {
    block: i64,
    filled: i64,
    bits: Vec<u8>,
}

impl Default for GramIndexer {
    fn default() -> Self {
        Self { block: 0, filled: 0, bits: vec![0; GRAM_BITS / 8] }
    }
}

impl GramIndexer {
    /// Adds the next row's lowercased text; returns the block's filter when this row filled it.
    pub fn push(&mut self, folded: &str) -> Option<GramBlock> {
        for gram in folded.as_bytes().windows(3) {
            for bit in gram_bits(gram) {
                self.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        self.filled += 1;
        (self.filled == GRAM_BLOCK_ROWS).then(|| self.take_block())
    }

    /// The last block's filter and the mark.
    pub fn finish(mut self) -> Vec<GramBlock> {
        let mut blocks = if self.filled > 0 { vec![self.take_block()] } else { Vec::new() };
        blocks.push(GramBlock { block: COLUMN_MARK, bits: Vec::new() });
        blocks
    }

    fn take_block(&mut self) -> GramBlock {
        let block = GramBlock { block: self.block, bits: std::mem::replace(&mut self.bits, vec![0; GRAM_BITS / 8]) };
        self.block += 1;
        self.filled = 0;
        block
    }
}

/// The bits a block's filter has set if the block holds a search's lowercased text.
pub struct Needle(Vec<usize>);

impl Needle {
    /// `None` for text shorter than a trigram: any block may hold it.
    pub fn new(folded: &str) -> Option<Self> {
        let mut bits: Vec<usize> = folded.as_bytes().windows(3).flat_map(gram_bits).collect();
        bits.sort_unstable();
        bits.dedup();
        (!bits.is_empty()).then_some(Self(bits))
    }

    fn passes(&self, filter: &[u8]) -> bool {
        self.0.iter().all(|bit| filter.get(bit / 8).is_some_and(|byte| byte >> (bit % 8) & 1 == 1))
    }
}

/// Stores the text index's filters (and mark) of export `export_id`.
pub async fn store_grams(conn: &impl ConnectionTrait, export_id: &str, blocks: Vec<GramBlock>) -> Result<(), DbErr> {
    // 8 KiB each: a few per statement.
    const ROWS_PER_STATEMENT: usize = 64;
    let mut rows = blocks.into_iter().map(|b| export_gram::Model { export_id: export_id.to_owned(), block: b.block, bits: b.bits }.into_active_model());
    loop {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        export_gram::Entity::insert_many(chunk).exec_without_returning(conn).await?;
    }
}

/// Whether the export has a text index (exports indexed before it came have none).
pub async fn has_grams(conn: &impl ConnectionTrait, export_id: &str) -> Result<bool, DbErr> {
    let mark = export_gram::Entity::find()
        .select_only()
        .column(export_gram::Column::Block)
        .filter(export_gram::Column::ExportId.eq(export_id))
        .filter(export_gram::Column::Block.eq(COLUMN_MARK))
        .into_tuple::<i64>()
        .one(conn)
        .await?;
    Ok(mark.is_some())
}

/// The position ranges `(from, to]`, ascending, within `(after, until]` whose rows may hold
/// `needle`: those of the blocks whose filter passes it. A block without a filter may hold it.
pub async fn gram_ranges(conn: &impl ConnectionTrait, export_id: &str, needle: &Needle, after: i64, until: i64) -> Result<Vec<(i64, i64)>, DbErr> {
    let Some((first, last)) = blocks_of(after, until) else { return Ok(Vec::new()) };
    let filters: Vec<(i64, Vec<u8>)> = export_gram::Entity::find()
        .select_only()
        .columns([export_gram::Column::Block, export_gram::Column::Bits])
        .filter(export_gram::Column::ExportId.eq(export_id))
        .filter(export_gram::Column::Block.between(first, last))
        .order_by_asc(export_gram::Column::Block)
        .into_tuple()
        .all(conn)
        .await?;
    let passed: Vec<(i64, bool)> = filters.into_iter().map(|(block, bits)| (block, needle.passes(&bits))).collect();
    Ok(candidate_ranges(after, until, &passed))
}

/// The first and last block holding a position of `(after, until]`.
fn blocks_of(after: i64, until: i64) -> Option<(i64, i64)> {
    (until > after).then(|| ((after + 1) / GRAM_BLOCK_ROWS, until / GRAM_BLOCK_ROWS))
}

/// The ranges of `(after, until]` in the blocks that are not known to lack the text: `filters`
/// says, ascending, which blocks' filters passed it; a block it leaves out may hold it.
fn candidate_ranges(after: i64, until: i64, filters: &[(i64, bool)]) -> Vec<(i64, i64)> {
    let Some((first, last)) = blocks_of(after, until) else { return Vec::new() };
    let mut filters = filters.iter().peekable();
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for block in first..=last {
        while filters.next_if(|(b, _)| *b < block).is_some() {}
        if filters.next_if(|(b, _)| *b == block).is_some_and(|(_, passed)| !passed) {
            continue;
        }
        let (lo, hi) = ((block * GRAM_BLOCK_ROWS - 1).max(after), ((block + 1) * GRAM_BLOCK_ROWS - 1).min(until));
        match ranges.last_mut() {
            Some(range) if range.1 == lo => range.1 = hi,
            _ => ranges.push((lo, hi)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(rows: &[[&str; 3]], block_rows: usize) -> (Vec<(i32, String, i64, Vec<u16>)>, Vec<i32>) {
        let mut indexer = CellIndexer::with_block(3, block_rows);
        let mut postings = Vec::new();
        for row in rows {
            postings.extend(indexer.push(row.iter().copied()).unwrap_or_default());
        }
        let (last, withdrawn) = indexer.finish();
        postings.extend(last);
        let mut postings: Vec<_> = postings.into_iter().map(|p| (p.col, p.value, p.block, p.offsets)).collect();
        postings.sort();
        (postings, withdrawn)
    }

    #[test]
    fn each_short_repeated_value_is_found_by_block_and_offset_and_other_columns_are_left_out() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let ids: Vec<String> = (0..10).map(|i| format!("id{i}")).collect();
        let channels = ["a", "b", "a", "a", "b", "a", "a", "a", "b", "a"];
        let rows: Vec<[&str; 3]> = (0..10).map(|i| [channels[i], ids[i].as_str(), if i == 2 { long.as_str() } else { "s" }]).collect();
        let (postings, withdrawn) = index(&rows, 8);
        let p = |col: i32, value: &str, block: i64, offsets: &[u16]| (col, value.to_owned(), block, offsets.to_vec());
        assert_eq!(
            postings,
            vec![
                // Column 0 repeats: indexed, across two blocks of 8 rows, and marked. Column 1 has
                // a new value in every row: left out once a block held more than a quarter of its
                // rows' worth of values. Column 2 met a long value. Both in the first block, so
                // nothing of theirs was handed out.
                p(0, "", -1, &[]),
                p(0, "a", 0, &[0, 2, 3, 5, 6, 7]),
                p(0, "a", 1, &[1]),
                p(0, "b", 0, &[1, 4]),
                p(0, "b", 1, &[0]),
            ],
        );
        assert!(withdrawn.is_empty());
    }

    #[test]
    fn a_column_left_out_after_a_stored_block_is_withdrawn() {
        let long = "y".repeat(MAX_VALUE_BYTES + 1);
        let rows: Vec<[&str; 3]> = (0..9).map(|i| ["a", "k", if i == 8 { long.as_str() } else { "k" }]).collect();
        let (postings, withdrawn) = index(&rows, 8);
        assert_eq!(withdrawn, vec![2], "its block 0 was handed out before the long value came");
        assert!(postings.contains(&(2, "k".to_owned(), 0, (0..8).collect())), "block 0 of column 2 was handed out");
        assert!(!postings.iter().any(|p| p.0 == 2 && p.2 == -1), "but column 2 is not marked");
        assert!(postings.contains(&(0, "a".to_owned(), 1, vec![0])));
        assert!(postings.contains(&(1, String::new(), -1, vec![])));
    }

    #[test]
    fn offsets_of_several_filters_are_intersected_in_order() {
        assert_eq!(intersect(vec![vec![1, 3, 5, 9], vec![0, 3, 9], vec![3, 4, 9, 12]]), vec![3, 9]);
        assert_eq!(intersect(vec![vec![1, 2], vec![]]), Vec::<u16>::new());
    }
    #[test]
    fn a_block_filter_passes_text_its_rows_hold_and_mostly_refuses_text_they_do_not() {
        let mut indexer = GramIndexer::default();
        let rows: Vec<String> = (0..GRAM_BLOCK_ROWS + 1).map(|i| format!("{{\"note\":\"order {i} of cus_{}\",\"x\":\"é\"}}", i % 50)).collect();
        let mut blocks: Vec<GramBlock> = rows.iter().filter_map(|r| indexer.push(r)).collect();
        assert_eq!(blocks.len(), 1, "the first block filled");
        blocks.extend(indexer.finish());
        assert_eq!(blocks.iter().map(|b| (b.block, b.bits.len())).collect::<Vec<_>>(), vec![(0, GRAM_BITS / 8), (1, GRAM_BITS / 8), (-1, 0)]);
        let passes = |text: &str, block: usize| Needle::new(text).unwrap().passes(&blocks[block].bits);
        for held in ["order 17 of", "cus_49", "\"é\"", "r 1024 "] {
            assert!(passes(held, if held.contains("1024") { 1 } else { 0 }), "{held}");
        }
        assert!(!passes("r 1024 ", 0), "row 1024 is in the second block");
        assert!(!passes("quetzal", 0) && !passes("cus_77", 1));
        assert!(Needle::new("ab").is_none(), "shorter than a trigram");
    }
    #[test]
    fn candidate_ranges_cover_every_position_of_the_window_in_passing_blocks_whatever_the_cursor() {
        const B: i64 = GRAM_BLOCK_ROWS;
        // Every block passes: the whole window, one range, whatever its bounds' place in a block.
        for after in [-1, 0, 1, B - 2, B - 1, B, B + 1, 3 * B - 1, 3 * B] {
            let until = after + 16 * B;
            let every: Vec<(i64, bool)> = (0..=until / B).map(|b| (b, true)).collect();
            assert_eq!(candidate_ranges(after, until, &every), vec![(after, until)], "after {after}");
            assert_eq!(candidate_ranges(after, until, &[]), vec![(after, until)], "no filters: after {after}");
        }
        // Position `until` of a window ending on a block's first row is in that block (and the
        // blocks without a filter may hold the text).
        assert_eq!(candidate_ranges(B - 1, 17 * B, &[(17, true)]), vec![(B - 1, 17 * B)]);
        let skipped: Vec<(i64, bool)> = (1..=17).map(|b| (b, b == 17)).collect();
        assert_eq!(candidate_ranges(B - 1, 17 * B, &skipped), vec![(17 * B - 1, 17 * B)], "only the last position's block");
        // Blocks 1 and 2 lack the text: what is left of block 0 after the cursor, then block 3 on.
        let filters = [(0, true), (1, false), (2, false), (3, true), (4, true)];
        assert_eq!(candidate_ranges(5, 4 * B + 9, &filters), vec![(5, B - 1), (3 * B - 1, 4 * B + 9)]);
        assert_eq!(candidate_ranges(B - 1, 3 * B - 1, &filters), Vec::<(i64, i64)>::new(), "both blocks lack it");
        assert!(candidate_ranges(7, 7, &filters).is_empty());
    }
}
