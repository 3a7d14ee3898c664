//! Field (value) mappings: seed 000 §6's ERP field mapping table, kept in the store.
//!
//! # What it owns and promises
//! - A row pairs a CRM value with an ERP value inside one **table**, named by
//!   `(data_center, channel, data_type)` (the seed's `dataCenterId`, `channel`, `dataType`;
//!   `data_center` is empty for a single account set). E.g. employees, whose ids differ
//!   between the two systems.
//! - **Both directions are unique**: within a table a CRM value has at most one ERP value
//!   and an ERP value at most one CRM value, so a look-up either way has one answer.
//! - [`FieldMappingStore::put_field_mappings`] applies its rows in order in ONE
//!   transaction: a row replaces the one with the same CRM value; a row whose ERP value
//!   already belongs to another CRM value of the table is a [`StoreError::Conflict`] and
//!   nothing is written. It answers how many rows were added, changed and already so.
//! - Listings come out by table, then CRM value in natural order ([`super::natural_key`]).

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::{dispatch, Store, StoreError};

/// Which table a field mapping belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldTable {
    /// The seed's `dataCenterId`; empty for a single account set.
    pub data_center: String,
    /// `ERP_K3CLOUD`, `ERP_SAP`, `ERP_U8`, `OA`, `STANDARD_CHANNEL`, … (not restricted here).
    pub channel: String,
    /// What is mapped, e.g. `employee`.
    pub data_type: String,
}

/// One CRM value and the ERP value it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub data_center: String,
    pub channel: String,
    pub data_type: String,
    /// The seed's `fsDataId` (for employees: the employee id, not the CRM record id).
    pub crm_value: String,
    /// The seed's `fsDataName`.
    pub crm_name: Option<String>,
    /// The seed's `erpDataId`.
    pub erp_value: String,
    /// The seed's `erpDataName`.
    pub erp_name: Option<String>,
}

impl FieldMapping {
    /// The table this row belongs to.
    pub fn table(&self) -> FieldTable {
        FieldTable {
            data_center: self.data_center.clone(),
            channel: self.channel.clone(),
            data_type: self.data_type.clone(),
        }
    }

    /// True when the row belongs to `table`.
    pub fn is_in(&self, table: &FieldTable) -> bool {
        self.data_center == table.data_center && self.channel == table.channel && self.data_type == table.data_type
    }
}

/// A row in the platform's `createErpfieldmapping` shape (seed 000 §6), for an HTTP API:
/// `{"dataCenterId", "channel", "dataType", "fsDataId", "fsDataName", "erpDataId", "erpDataName"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformFieldMapping {
    #[serde(default)]
    pub data_center_id: String,
    pub channel: String,
    pub data_type: String,
    pub fs_data_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_data_name: Option<String>,
    pub erp_data_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erp_data_name: Option<String>,
}

impl From<PlatformFieldMapping> for FieldMapping {
    fn from(p: PlatformFieldMapping) -> FieldMapping {
        FieldMapping {
            data_center: p.data_center_id,
            channel: p.channel,
            data_type: p.data_type,
            crm_value: p.fs_data_id,
            crm_name: p.fs_data_name,
            erp_value: p.erp_data_id,
            erp_name: p.erp_data_name,
        }
    }
}

impl From<FieldMapping> for PlatformFieldMapping {
    fn from(m: FieldMapping) -> PlatformFieldMapping {
        PlatformFieldMapping {
            data_center_id: m.data_center,
            channel: m.channel,
            data_type: m.data_type,
            fs_data_id: m.crm_value,
            fs_data_name: m.crm_name,
            erp_data_id: m.erp_value,
            erp_data_name: m.erp_name,
        }
    }
}

/// Filters for [`FieldMappingStore::list_field_mappings`]; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMappingFilter {
    pub data_center: Option<String>,
    pub channel: Option<String>,
    pub data_type: Option<String>,
}

impl FieldMappingFilter {
    /// Exactly the rows of `table`.
    pub fn table(table: &FieldTable) -> FieldMappingFilter {
        FieldMappingFilter {
            data_center: Some(table.data_center.clone()),
            channel: Some(table.channel.clone()),
            data_type: Some(table.data_type.clone()),
        }
    }

    /// True when `row` passes every filter.
    pub fn matches(&self, row: &FieldMapping) -> bool {
        let passes = |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|wanted| wanted == value);
        passes(&self.data_center, &row.data_center)
            && passes(&self.channel, &row.channel)
            && passes(&self.data_type, &row.data_type)
    }
}

/// Which side of a field mapping a look-up starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldSide {
    /// Look up by CRM value (CRM → ERP).
    Crm,
    /// Look up by ERP value (ERP → CRM).
    Erp,
}

/// What [`FieldMappingStore::put_field_mappings`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMappingChanges {
    /// Rows with a CRM value the table did not have.
    pub added: u64,
    /// Rows that replaced a different row with the same CRM value.
    pub changed: u64,
    /// Rows the table already held exactly.
    pub unchanged: u64,
}

/// What a put does with one row, decided from the rows it could collide with.
pub(crate) enum PutStep {
    Add,
    Change,
    Keep,
}

/// Decides one row of a put: `same_crm` is the stored row with its CRM value, `erp_owner`
/// the CRM value that already holds its ERP value in the table.
pub(crate) fn put_step(
    row: &FieldMapping,
    same_crm: Option<&FieldMapping>,
    erp_owner: Option<&str>,
) -> Result<PutStep, StoreError> {
    if let Some(owner) = erp_owner.filter(|owner| *owner != row.crm_value) {
        return Err(StoreError::Conflict(format!(
            "ERP value {:?} of table {} is already mapped from CRM value {owner:?}; delete that row first \
             (`ferry field-mappings delete`) or map {:?} to another ERP value",
            row.erp_value,
            describe_table(&row.table()),
            row.crm_value
        )));
    }
    Ok(match same_crm {
        None => PutStep::Add,
        Some(stored) if stored == row => PutStep::Keep,
        Some(_) => PutStep::Change,
    })
}

impl FieldMappingChanges {
    pub(crate) fn count(&mut self, step: &PutStep) {
        match step {
            PutStep::Add => self.added += 1,
            PutStep::Change => self.changed += 1,
            PutStep::Keep => self.unchanged += 1,
        }
    }
}

/// `employee (channel STANDARD_CHANNEL, data center dc1)`, for messages.
pub fn describe_table(table: &FieldTable) -> String {
    if table.data_center.is_empty() {
        format!("{} (channel {})", table.data_type, table.channel)
    } else {
        format!(
            "{} (channel {}, data center {})",
            table.data_type, table.channel, table.data_center
        )
    }
}

/// Rejects rows with an empty channel, data type, CRM value or ERP value.
pub(crate) fn check_rows(rows: &[FieldMapping]) -> Result<(), StoreError> {
    for row in rows {
        for (field, value) in [
            ("channel", &row.channel),
            ("data_type", &row.data_type),
            ("crm_value", &row.crm_value),
            ("erp_value", &row.erp_value),
        ] {
            if value.is_empty() {
                return Err(StoreError::InvalidRequest(format!(
                    "a field mapping needs a non-empty {field} (CRM value {:?}, ERP value {:?})",
                    row.crm_value, row.erp_value
                )));
            }
        }
    }
    Ok(())
}

/// The listing order: table, then CRM value in natural order.
pub(crate) fn sort_rows(rows: &mut [FieldMapping]) {
    rows.sort_by(|a, b| {
        (
            &a.data_center,
            &a.channel,
            &a.data_type,
            super::natural_key(&a.crm_value),
        )
            .cmp(&(
                &b.data_center,
                &b.channel,
                &b.data_type,
                super::natural_key(&b.crm_value),
            ))
    });
}

/// The store-backed field mapping tables.
pub trait FieldMappingStore {
    /// Add or change rows in one transaction (see the module doc).
    fn put_field_mappings(
        &self,
        rows: &[FieldMapping],
    ) -> impl Future<Output = Result<FieldMappingChanges, StoreError>> + Send;

    /// Every row passing `filter`, in listing order.
    fn list_field_mappings(
        &self,
        filter: &FieldMappingFilter,
    ) -> impl Future<Output = Result<Vec<FieldMapping>, StoreError>> + Send;

    /// Forget the row of `table` with this CRM value; `true` if there was one.
    fn delete_field_mapping(
        &self,
        table: &FieldTable,
        crm_value: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The row of `table` whose `side` value is `value`.
    fn find_field_mapping(
        &self,
        table: &FieldTable,
        side: FieldSide,
        value: &str,
    ) -> impl Future<Output = Result<Option<FieldMapping>, StoreError>> + Send;
}

impl FieldMappingStore for Store {
    async fn put_field_mappings(&self, rows: &[FieldMapping]) -> Result<FieldMappingChanges, StoreError> {
        check_rows(rows)?;
        dispatch!(self, s => s.put_field_mappings(rows).await)
    }

    async fn list_field_mappings(&self, filter: &FieldMappingFilter) -> Result<Vec<FieldMapping>, StoreError> {
        dispatch!(self, s => s.list_field_mappings(filter).await)
    }

    async fn delete_field_mapping(&self, table: &FieldTable, crm_value: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_field_mapping(table, crm_value).await)
    }

    async fn find_field_mapping(
        &self,
        table: &FieldTable,
        side: FieldSide,
        value: &str,
    ) -> Result<Option<FieldMapping>, StoreError> {
        dispatch!(self, s => s.find_field_mapping(table, side, value).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_shape_reads_into_a_row_and_back() {
        let body = serde_json::json!({
            "dataCenterId": "dc1", "channel": "ERP_K3CLOUD", "dataType": "employee",
            "fsDataId": "E1", "fsDataName": "Zhang San", "erpDataId": "0001", "erpDataName": "张三"
        });
        let platform: PlatformFieldMapping = serde_json::from_value(body.clone()).unwrap();
        let row = FieldMapping::from(platform.clone());
        assert_eq!((row.crm_value.as_str(), row.erp_value.as_str()), ("E1", "0001"));
        assert_eq!(row.data_center, "dc1");
        assert_eq!(serde_json::to_value(PlatformFieldMapping::from(row)).unwrap(), body);
        let unknown =
            serde_json::json!({"channel": "OA", "dataType": "x", "fsDataId": "1", "erpDataId": "2", "extra": 1});
        assert!(serde_json::from_value::<PlatformFieldMapping>(unknown).is_err());
    }
}
