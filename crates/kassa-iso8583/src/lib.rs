//! kassa-iso8583
