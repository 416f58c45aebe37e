//! PostgreSQL bulk inserts as `INSERT … SELECT … FROM UNNEST($1::text[], $2::int8[], …)`: one array
//! parameter per column, so a batch of any size is one statement of fixed text, planned once.
//! (A multi-row `VALUES` list of 512 rows binds 5,000 values and is parsed and planned anew for
//! every chunk, since `plan_cache_mode=force_custom_plan`; see `db::connect`.)

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

/// An insert being built column by column; every column must get one value per row.
pub struct Unnest {
    table: &'static str,
    /// (name, PostgreSQL element type, whether '' stands for NULL, the array).
    columns: Vec<(&'static str, &'static str, bool, Value)>,
}

impl Unnest {
    pub fn insert_into(table: &'static str) -> Self {
        Self { table, columns: Vec::new() }
    }

    pub fn text(self, name: &'static str, values: impl IntoIterator<Item = String>) -> Self {
        self.column(name, "text", false, values.into_iter().collect::<Vec<_>>().into())
    }

    /// A nullable text column. sea-query binds arrays without NULL elements only, so a missing
    /// value travels as '' and the statement turns it back into NULL (no id is empty).
    pub fn optional_text(self, name: &'static str, values: impl IntoIterator<Item = Option<String>>) -> Self {
        let values: Vec<String> = values.into_iter().map(Option::unwrap_or_default).collect();
        self.column(name, "text", true, values.into())
    }

    pub fn big_int(self, name: &'static str, values: impl IntoIterator<Item = i64>) -> Self {
        self.column(name, "int8", false, values.into_iter().collect::<Vec<_>>().into())
    }

    pub fn int(self, name: &'static str, values: impl IntoIterator<Item = i32>) -> Self {
        self.column(name, "int4", false, values.into_iter().collect::<Vec<_>>().into())
    }

    pub fn bool(self, name: &'static str, values: impl IntoIterator<Item = bool>) -> Self {
        self.column(name, "bool", false, values.into_iter().collect::<Vec<_>>().into())
    }

    fn column(mut self, name: &'static str, sql_type: &'static str, nullable: bool, values: Value) -> Self {
        self.columns.push((name, sql_type, nullable, values));
        self
    }

    /// Runs the insert; with `returning`, the columns to return of every inserted row.
    pub async fn exec(self, conn: &impl ConnectionTrait, returning: Option<&str>) -> Result<Vec<QueryResult>, DbErr> {
        let names: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        let selected: Vec<String> =
            self.columns.iter().map(|(name, _, nullable, _)| if *nullable { format!("NULLIF({name}, '')") } else { (*name).to_owned() }).collect();
        let arrays: Vec<String> = self.columns.iter().enumerate().map(|(i, (_, sql_type, _, _))| format!("${}::{sql_type}[]", i + 1)).collect();
        let returning = returning.map(|r| format!(" RETURNING {r}")).unwrap_or_default();
        let sql = format!(
            "INSERT INTO {table} ({names}) SELECT {selected} FROM UNNEST({arrays}) AS u({names}){returning}",
            table = self.table,
            names = names.join(", "),
            selected = selected.join(", "),
            arrays = arrays.join(", "),
        );
        let values = self.columns.into_iter().map(|c| c.3);
        conn.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await
    }
}
