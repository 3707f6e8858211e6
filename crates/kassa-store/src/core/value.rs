//! The few SQL values Kassa's schema uses, shared by both backends, so that every query and
//! every record conversion is written once.

use crate::StoreError;

/// A SQL parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn get(&self, index: usize) -> Result<&Value, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::Corrupt(format!("missing column {index}")))
    }

    pub(crate) fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.get(index)? {
            Value::Int(v) => Ok(*v),
            Value::Bool(v) => Ok(i64::from(*v)),
            other => Err(StoreError::Corrupt(format!("column {index}: expected an integer, found {other:?}"))),
        }
    }

    pub(crate) fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    pub(crate) fn boolean(&self, index: usize) -> Result<bool, StoreError> {
        match self.get(index)? {
            Value::Bool(v) => Ok(*v),
            Value::Int(v) => Ok(*v != 0),
            other => Err(StoreError::Corrupt(format!("column {index}: expected a boolean, found {other:?}"))),
        }
    }

    pub(crate) fn text(&self, index: usize) -> Result<String, StoreError> {
        match self.get(index)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!("column {index}: expected text, found {other:?}"))),
        }
    }

    pub(crate) fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        match self.get(index)? {
            Value::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }

    pub(crate) fn bytes(&self, index: usize) -> Result<Vec<u8>, StoreError> {
        match self.get(index)? {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(StoreError::Corrupt(format!("column {index}: expected bytes, found {other:?}"))),
        }
    }
}

/// Builds a parameter list: `params![a, b, c]`.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        [$($crate::core::value::Value::from($value)),*]
    };
}
pub(crate) use params;
