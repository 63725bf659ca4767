//! Row counts per partition from the files' footers: `SELECT site, hour, count(*) FROM readings
//! GROUP BY site, hour` needs no row read.
//!
//! Every file of the archive lies in one partition (`site`, `date`, `hour` come from its path)
//! and its Parquet footer holds its exact row count, which the listing table reads into the
//! file's statistics. A count grouped by partition columns only, over a scan with no filter on
//! the rows, is therefore the sum of those counts per partition. DataFusion 55 answers
//! `count(*)` from statistics only without `GROUP BY`; with it, it reads every file and hashes
//! every row's partition values (150 ms for a day of 200 machines, against 10 ms for DuckDB,
//! which answers such a query from the footers). This rule replaces the scan and the raw
//! aggregation by the counts; anything else (a filter on the rows, another aggregate, a group
//! key that is not a partition column, a file without an exact count) keeps the plan as it is.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateInputMode};

/// The physical optimizer rule; registered by [`super::session`].
#[derive(Debug, Default)]
pub(super) struct PartitionCounts;

impl PhysicalOptimizerRule for PartitionCounts {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match counts(&node)? {
            Some(replacement) => Ok(Transformed::yes(replacement)),
            None => Ok(Transformed::no(node)),
        })
        .data()
    }

    fn name(&self) -> &str {
        "stator_partition_counts"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The counts that replace `node`, when it is an aggregation this rule answers.
fn counts(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(agg) = node.downcast_ref::<AggregateExec>() else { return Ok(None) };
    // Raw input (Partial, Single, SinglePartitioned): its output for a group is the count, as
    // partial state or as final value alike (count's state is its value).
    if agg.mode().input_mode() != AggregateInputMode::Raw
        || !agg.group_expr().is_single()
        || agg.group_expr().expr().is_empty()
        || agg.filter_expr().iter().any(Option::is_some)
        || !agg.aggr_expr().iter().all(|a| {
            a.fun().name() == "count"
                && !a.is_distinct()
                && a.expressions().iter().all(|e| e.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null()))
        })
    {
        return Ok(None);
    }
    let Some(scan) = agg.input().downcast_ref::<DataSourceExec>() else { return Ok(None) };
    let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>() else { return Ok(None) };
    let source = config.file_source();
    if config.limit.is_some() || source.filter().is_some() || source.file_type() != "parquet" {
        return Ok(None);
    }
    // Which partition column each group key is.
    let table = source.table_schema();
    let files_width = table.file_schema().fields().len();
    let mut keys = Vec::new();
    for (expr, _) in agg.group_expr().expr() {
        let Some(column) = expr.downcast_ref::<Column>() else { return Ok(None) };
        let table_index = match source.projection() {
            None => column.index(),
            Some(projection) => {
                let Some(p) = projection.iter().nth(column.index()) else { return Ok(None) };
                let Some(c) = p.expr.downcast_ref::<Column>() else { return Ok(None) };
                c.index()
            }
        };
        let Some(k) = table_index.checked_sub(files_width) else { return Ok(None) };
        if k >= table.table_partition_cols().len() {
            return Ok(None);
        }
        keys.push(k);
    }
    // Each file once (a scan may read a file in byte ranges), with its exact row count.
    let mut seen = std::collections::HashSet::new();
    let mut totals: HashMap<Vec<ScalarValue>, i64> = HashMap::new();
    for file in config.file_groups.iter().flat_map(|g| g.iter()) {
        if !seen.insert(&file.object_meta.location) {
            continue;
        }
        let Some(Precision::Exact(rows)) = file.statistics.as_ref().map(|s| s.num_rows) else { return Ok(None) };
        let key: Option<Vec<ScalarValue>> = keys.iter().map(|&k| file.partition_values.get(k).cloned()).collect();
        let Some(key) = key else { return Ok(None) };
        *totals.entry(key).or_default() += i64::try_from(rows).unwrap_or(i64::MAX);
    }
    let schema = agg.schema();
    if totals.is_empty() || schema.fields().len() != keys.len() + agg.aggr_expr().len() {
        return Ok(None);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().take(keys.len()).enumerate() {
        let values = ScalarValue::iter_to_array(totals.keys().map(|k| k[i].clone()))?;
        columns.push(datafusion::arrow::compute::cast(&values, field.data_type())?);
    }
    let n: ArrayRef = Arc::new(totals.values().copied().collect::<Int64Array>());
    for field in schema.fields().iter().skip(keys.len()) {
        columns.push(datafusion::arrow::compute::cast(&n, field.data_type())?);
    }
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Some(MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None)?))
}
