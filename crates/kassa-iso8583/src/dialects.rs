//! The dialect tables. Each is data only: adding a dialect means adding a table here (or in
//! the caller's crate), never touching the codec.

use crate::spec::{
    fixed, fixed_left, ll, lll, table, BitmapEncoding, Dialect, Encoding,
    Kind::{An, Ans, AnsGbk, B, N, Z},
};

/// The Kassa terminal protocol (docs/reference/iso8583.md): China UnionPay POS layout, packed BCD, BCD
/// lengths, binary primary bitmap only.
pub static UNIONPAY: Dialect = Dialect {
    name: "unionpay-pos",
    digits: Encoding::Bcd,
    lengths: Encoding::Bcd,
    bitmap: BitmapEncoding::Binary,
    secondary_bitmap: false,
    fields: table(&[
        (2, ll(N, 19)),         // PAN
        (3, fixed(N, 6)),       // processing code
        (4, fixed(N, 12)),      // amount, fen
        (11, fixed(N, 6)),      // STAN
        (12, fixed(N, 6)),      // local time hhmmss
        (13, fixed(N, 4)),      // local date MMDD
        (14, fixed(N, 4)),      // expiry YYMM
        (15, fixed(N, 4)),      // settlement date MMDD
        (22, fixed_left(N, 3)), // POS entry mode: terminals send `021` as `02 10`
        (23, fixed(N, 3)),      // card sequence number
        (25, fixed(N, 2)),      // condition code
        (26, fixed(N, 2)),      // PIN capture code
        (32, ll(N, 11)),        // acquirer institution id
        (35, ll(Z, 37)),        // track 2
        (36, lll(Z, 104)),      // track 3
        (37, fixed(An, 12)),    // RRN
        (38, fixed(An, 6)),     // authorisation code
        (39, fixed(An, 2)),     // response code
        (41, fixed(Ans, 8)),    // TID
        (42, fixed(Ans, 15)),   // MID
        (44, ll(Ans, 25)),      // issuer id + acquirer id
        (48, lll(N, 322)),      // settlement totals / batch-upload count
        (49, fixed(An, 3)),     // currency
        (52, fixed(B, 8)),      // PIN block
        (53, fixed(N, 16)),     // security control
        (54, lll(Ans, 20)),     // balance
        (55, lll(B, 255)),      // ICC data, BER-TLV
        (60, lll(N, 17)),       // 60.1 message type, 60.2 batch, 60.3 network management code
        (61, lll(N, 29)),       // original transaction
        (62, lll(B, 60)),       // working keys
        (63, lll(AnsGbk, 163)), // operator code / card organisation
        (64, fixed(B, 8)),      // MAC
    ]),
};

/// ISO 8583:1987 with ASCII MTI, hexadecimal ASCII bitmaps (primary and secondary), ASCII
/// lengths and ASCII digits. `x+n` fields (28–31, 97) are carried as `ans` with the sign.
pub static ISO8583_1987_ASCII: Dialect = Dialect {
    name: "iso8583-1987-ascii",
    digits: Encoding::Ascii,
    lengths: Encoding::Ascii,
    bitmap: BitmapEncoding::HexAscii,
    secondary_bitmap: true,
    fields: table(&[
        (2, ll(N, 19)),
        (3, fixed(N, 6)),
        (4, fixed(N, 12)),
        (5, fixed(N, 12)),
        (6, fixed(N, 12)),
        (7, fixed(N, 10)),
        (8, fixed(N, 8)),
        (9, fixed(N, 8)),
        (10, fixed(N, 8)),
        (11, fixed(N, 6)),
        (12, fixed(N, 6)),
        (13, fixed(N, 4)),
        (14, fixed(N, 4)),
        (15, fixed(N, 4)),
        (16, fixed(N, 4)),
        (17, fixed(N, 4)),
        (18, fixed(N, 4)),
        (19, fixed(N, 3)),
        (20, fixed(N, 3)),
        (21, fixed(N, 3)),
        (22, fixed(N, 3)),
        (23, fixed(N, 3)),
        (24, fixed(N, 3)),
        (25, fixed(N, 2)),
        (26, fixed(N, 2)),
        (27, fixed(N, 1)),
        (28, fixed(Ans, 9)),
        (29, fixed(Ans, 9)),
        (30, fixed(Ans, 9)),
        (31, fixed(Ans, 9)),
        (32, ll(N, 11)),
        (33, ll(N, 11)),
        (34, ll(Ans, 28)),
        (35, ll(Z, 37)),
        (36, lll(Z, 104)),
        (37, fixed(An, 12)),
        (38, fixed(An, 6)),
        (39, fixed(An, 2)),
        (40, fixed(An, 3)),
        (41, fixed(Ans, 8)),
        (42, fixed(Ans, 15)),
        (43, fixed(Ans, 40)),
        (44, ll(An, 25)),
        (45, ll(An, 76)),
        (46, lll(An, 999)),
        (47, lll(An, 999)),
        (48, lll(Ans, 999)),
        (49, fixed(An, 3)),
        (50, fixed(An, 3)),
        (51, fixed(An, 3)),
        (52, fixed(B, 8)),
        (53, fixed(N, 16)),
        (54, lll(An, 120)),
        (55, lll(Ans, 999)),
        (56, lll(Ans, 999)),
        (57, lll(Ans, 999)),
        (58, lll(Ans, 999)),
        (59, lll(Ans, 999)),
        (60, lll(Ans, 999)),
        (61, lll(Ans, 999)),
        (62, lll(Ans, 999)),
        (63, lll(Ans, 999)),
        (64, fixed(B, 8)),
        (65, fixed(B, 8)),
        (66, fixed(N, 1)),
        (67, fixed(N, 2)),
        (68, fixed(N, 3)),
        (69, fixed(N, 3)),
        (70, fixed(N, 3)),
        (71, fixed(N, 4)),
        (72, fixed(N, 4)),
        (73, fixed(N, 6)),
        (74, fixed(N, 10)),
        (75, fixed(N, 10)),
        (76, fixed(N, 10)),
        (77, fixed(N, 10)),
        (78, fixed(N, 10)),
        (79, fixed(N, 10)),
        (80, fixed(N, 10)),
        (81, fixed(N, 10)),
        (82, fixed(N, 12)),
        (83, fixed(N, 12)),
        (84, fixed(N, 12)),
        (85, fixed(N, 12)),
        (86, fixed(N, 16)),
        (87, fixed(N, 16)),
        (88, fixed(N, 16)),
        (89, fixed(N, 16)),
        (90, fixed(N, 42)),
        (91, fixed(An, 1)),
        (92, fixed(An, 2)),
        (93, fixed(An, 5)),
        (94, fixed(An, 7)),
        (95, fixed(An, 42)),
        (96, fixed(B, 8)),
        (97, fixed(Ans, 17)),
        (98, fixed(Ans, 25)),
        (99, ll(N, 11)),
        (100, ll(N, 11)),
        (101, ll(Ans, 17)),
        (102, ll(Ans, 28)),
        (103, ll(Ans, 28)),
        (104, lll(Ans, 100)),
        (105, lll(Ans, 999)),
        (106, lll(Ans, 999)),
        (107, lll(Ans, 999)),
        (108, lll(Ans, 999)),
        (109, lll(Ans, 999)),
        (110, lll(Ans, 999)),
        (111, lll(Ans, 999)),
        (112, lll(Ans, 999)),
        (113, lll(Ans, 999)),
        (114, lll(Ans, 999)),
        (115, lll(Ans, 999)),
        (116, lll(Ans, 999)),
        (117, lll(Ans, 999)),
        (118, lll(Ans, 999)),
        (119, lll(Ans, 999)),
        (120, lll(Ans, 999)),
        (121, lll(Ans, 999)),
        (122, lll(Ans, 999)),
        (123, lll(Ans, 999)),
        (124, lll(Ans, 999)),
        (125, lll(Ans, 999)),
        (126, lll(Ans, 999)),
        (127, lll(Ans, 999)),
        (128, fixed(B, 8)),
    ]),
};
