//! The names of a history table and its log, resolved once per run.

use crate::ident::quote;

/// The qualified, quoted names of the history table and its log.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    /// `"schema"."table"`.
    pub(crate) qualified: String,
    /// `"schema"."table_log"`.
    pub(crate) log: String,
}

impl Table {
    pub(crate) fn new(schema: &str, name: &str) -> Self {
        Table {
            schema: schema.to_owned(),
            name: name.to_owned(),
            qualified: format!("{}.{}", quote(schema), quote(name)),
            log: format!("{}.{}", quote(schema), quote(&format!("{name}_log"))),
        }
    }

    /// The text form used in messages: `schema.table`.
    pub(crate) fn display(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}
