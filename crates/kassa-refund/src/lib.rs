//! The refund workflow (退款审核 / 退款进度).
