//! `json_agg(x)` and `jsonb_agg(x)`: the values of a group as a JSON array.
//!
//! Each value becomes a JSON element as `json_build_array` makes it
//! (`crate::text_types`): numbers and booleans as themselves, text as a
//! string, a `json` or `jsonb` value as the JSON it holds, timestamps as
//! ISO strings, NULL as `null`. `json_agg` prints the elements as
//! PostgreSQL does (`[1, 2, "a"]`, a `json` element keeping its own text);
//! `jsonb_agg` prints a `jsonb`. A group without rows gives NULL.
//!
//! `json_agg(x ORDER BY y [DESC] [NULLS FIRST], …)` puts the elements in
//! that order. The partial state of a group is the list of its elements'
//! texts and a list of each ORDER BY key, so the aggregate runs in two
//! phases (on slice servers, then merged) and is ordered when evaluated.

use std::sync::Arc;

use std::cmp::Ordering;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use serde_json::Value;
use slicedb_common::text_types;

use crate::text_types::{json_text, typed_text};

/// `json_agg` (`jsonb` false) or `jsonb_agg`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonAgg {
    jsonb: bool,
    signature: Signature,
}

impl JsonAgg {
    /// Both aggregates, to register.
    pub fn udafs() -> Vec<AggregateUDF> {
        [false, true]
            .map(|jsonb| {
                AggregateUDF::new_from_impl(JsonAgg {
                    jsonb,
                    signature: Signature::any(1, Volatility::Immutable),
                })
            })
            .to_vec()
    }
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        if self.jsonb {
            "jsonb_agg"
        } else {
            "json_agg"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field(&self, _arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        Ok(typed_text(self.name(), if self.jsonb { "jsonb" } else { "json" }))
    }

    fn is_nullable(&self) -> bool {
        true
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::HardRequirement
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let key_types = args
            .order_bys
            .iter()
            .map(|o| o.expr.data_type(args.schema))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(Box::new(JsonAggAccumulator {
            jsonb: self.jsonb,
            field: args.expr_fields[0].clone(),
            order: args.order_bys.iter().map(|o| o.options).collect(),
            key_types,
            elements: Vec::new(),
            keys: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let list = |name: String, ty: &DataType| {
            Arc::new(Field::new_list(name, Field::new_list_field(ty.clone(), true), true))
        };
        let mut fields = vec![list(format!("{}[elements]", args.name), &DataType::Utf8)];
        for (i, f) in args.ordering_fields.iter().enumerate() {
            fields.push(list(format!("{}[key{i}]", args.name), f.data_type()));
        }
        Ok(fields)
    }
}

#[derive(Debug)]
struct JsonAggAccumulator {
    jsonb: bool,
    /// The argument's field (its `slicedb.pg_type` says json or jsonb).
    field: FieldRef,
    /// The ORDER BY keys' directions and types.
    order: Vec<SortOptions>,
    key_types: Vec<DataType>,
    /// Each element's JSON text, and its ORDER BY keys.
    elements: Vec<String>,
    keys: Vec<Vec<ScalarValue>>,
}

impl JsonAggAccumulator {
    /// The elements' positions in ORDER BY order (stable: ties keep their
    /// input order).
    fn ordered(&self) -> Vec<usize> {
        let mut at: Vec<usize> = (0..self.elements.len()).collect();
        if self.order.is_empty() {
            return at;
        }
        at.sort_by(|a, b| {
            for ((x, y), o) in self.keys[*a].iter().zip(&self.keys[*b]).zip(&self.order) {
                let ord = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) if o.nulls_first => Ordering::Less,
                    (true, false) => Ordering::Greater,
                    (false, true) if o.nulls_first => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => {
                        let ord = x.partial_cmp(y).unwrap_or(Ordering::Equal);
                        if o.descending {
                            ord.reverse()
                        } else {
                            ord
                        }
                    }
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        at
    }
}

impl Accumulator for JsonAggAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let array = &values[0];
        for row in 0..array.len() {
            let text = match array.is_valid(row) {
                true => json_text(array, &self.field, row)?,
                false => "null".to_string(),
            };
            self.elements.push(text);
            let keys = values[1..]
                .iter()
                .map(|k| ScalarValue::try_from_array(k, row))
                .collect::<DfResult<Vec<_>>>()?;
            self.keys.push(keys);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let lists: &ListArray = states[0].as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_null(row) {
                continue;
            }
            let items = lists.value(row);
            let items = items.as_string::<i32>();
            self.elements
                .extend(items.iter().map(|t| t.unwrap_or("null").to_string()));
            let key_lists: Vec<ArrayRef> = states[1..].iter().map(|k| k.as_list::<i32>().value(row)).collect();
            for i in 0..items.len() {
                let keys = key_lists
                    .iter()
                    .map(|k| ScalarValue::try_from_array(k, i))
                    .collect::<DfResult<Vec<_>>>()?;
                self.keys.push(keys);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let items: Vec<ScalarValue> = self
            .elements
            .iter()
            .map(|t| ScalarValue::Utf8(Some(t.clone())))
            .collect();
        let mut state = vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &items,
            &DataType::Utf8,
        ))];
        for (k, ty) in self.key_types.iter().enumerate() {
            let keys: Vec<ScalarValue> = self.keys.iter().map(|row| row[k].clone()).collect();
            state.push(ScalarValue::List(ScalarValue::new_list_nullable(&keys, ty)));
        }
        Ok(state)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        if self.elements.is_empty() {
            return Ok(ScalarValue::Utf8(None));
        }
        let ordered: Vec<&String> = self.ordered().into_iter().map(|i| &self.elements[i]).collect();
        if !self.jsonb {
            let texts: Vec<&str> = ordered.iter().map(|t| t.as_str()).collect();
            return Ok(ScalarValue::Utf8(Some(format!("[{}]", texts.join(", ")))));
        }
        let values = ordered
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String((*t).clone())))
            .collect();
        Ok(ScalarValue::Utf8(Some(text_types::jsonb_text(&Value::Array(values)))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.elements.iter().map(|t| t.capacity() + 24).sum::<usize>()
    }
}
