//! Cost formulas (MACs per sample, output shape) that `archai stats` asks each op for. MACs count
//! the multiply-accumulates of convolutions and linear layers (thop/fvcore convention); batch
//! norm, activations and pooling cost 0.
use serde_json::Value;

type Cost = anyhow::Result<(i64, [i64; 3])>;

fn int(v: &Value, key: &str, default: i64) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(default)
}

fn out_side(side: i64, stride: i64) -> i64 {
    (side + stride - 1) / stride
}

/// Stride, output channels and output side of a cell op on `[c, h, _]`.
fn geometry(v: &Value, [c, h, _]: [i64; 3]) -> (i64, i64, i64) {
    let stride = int(v, "stride", 1);
    (stride, int(v, "c_out", c), out_side(h, stride))
}

fn dw_pw(k: i64, cin: i64, cout: i64, hw: i64) -> i64 {
    cin * k * k * hw + cin * cout * hw
}

/// Ops that compute no multiply-accumulates (zero, pooling, identity).
pub fn free(v: &Value, input: [i64; 3]) -> Cost {
    let (_, c_out, so) = geometry(v, input);
    Ok((0, [c_out, so, so]))
}

pub fn skip(v: &Value, input: [i64; 3]) -> Cost {
    let (stride, c_out, so) = geometry(v, input);
    let macs = if stride == 1 && c_out == input[0] { 0 } else { 2 * input[0] * (c_out / 2) * so * so };
    Ok((macs, [c_out, so, so]))
}

pub fn factorized_reduce(v: &Value, input: [i64; 3]) -> Cost {
    let c_out = int(v, "c_out", input[0]);
    let so = out_side(input[1], 2);
    Ok((2 * input[0] * (c_out / 2) * so * so, [c_out, so, so]))
}

fn sep(k: i64, v: &Value, input: [i64; 3]) -> Cost {
    let (_, c_out, so) = geometry(v, input);
    let hw = so * so;
    Ok((dw_pw(k, input[0], input[0], hw) + dw_pw(k, input[0], c_out, hw), [c_out, so, so]))
}

pub fn sep3(v: &Value, input: [i64; 3]) -> Cost {
    sep(3, v, input)
}

pub fn sep5(v: &Value, input: [i64; 3]) -> Cost {
    sep(5, v, input)
}

fn dil(k: i64, v: &Value, input: [i64; 3]) -> Cost {
    let (_, c_out, so) = geometry(v, input);
    Ok((dw_pw(k, input[0], c_out, so * so), [c_out, so, so]))
}

pub fn dil3(v: &Value, input: [i64; 3]) -> Cost {
    dil(3, v, input)
}

pub fn dil5(v: &Value, input: [i64; 3]) -> Cost {
    dil(5, v, input)
}

/// `relu_conv_bn` and `conv_bn`: one dense convolution.
pub fn conv(v: &Value, [c, h, _]: [i64; 3]) -> Cost {
    let k = int(v, "kernel_size", 1);
    let stride = int(v, "stride", 1);
    let pad = int(v, "padding", k / 2);
    let c_out = int(v, "c_out", c);
    let s = (h + 2 * pad - k) / stride + 1;
    Ok((c * c_out * k * k * s * s, [c_out, s, s]))
}

pub fn basic_block(v: &Value, input: [i64; 3]) -> Cost {
    let (stride, c_out, so) = geometry(v, input);
    let hw = so * so;
    let c_in = input[0];
    let shortcut = if stride != 1 || c_out != c_in { c_in * c_out * hw } else { 0 };
    Ok((c_in * c_out * 9 * hw + c_out * c_out * 9 * hw + shortcut, [c_out, so, so]))
}

pub fn linear(v: &Value, [c, _, _]: [i64; 3]) -> Cost {
    let c_out = int(v, "c_out", c);
    Ok((int(v, "c_in", c) * c_out, [c_out, 1, 1]))
}

pub fn global_avg_pool(_: &Value, [c, _, _]: [i64; 3]) -> Cost {
    Ok((0, [c, 1, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conv_macs_by_hand() {
        // 3x3 conv, 3 -> 16 channels, 32x32, padding 1: 16 * 3 * 9 * 32 * 32 = 442,368 MACs.
        assert_eq!(
            conv(&json!({"c_in": 3, "c_out": 16, "kernel_size": 3}), [3, 32, 32]).unwrap(),
            (442_368, [16, 32, 32])
        );
        // Stride 2, no padding, 1x1: 16 * 8 * 16 * 16.
        let c = conv(&json!({"c_in": 8, "c_out": 16, "kernel_size": 1, "stride": 2}), [8, 32, 32]).unwrap();
        assert_eq!(c, (16 * 8 * 16 * 16, [16, 16, 16]));
        // sep_conv_3x3, C=4, stride 1, 8x8: two (dw 4*9*64 + pw 4*4*64).
        assert_eq!(sep3(&json!({"c_in": 4}), [4, 8, 8]).unwrap().0, 2 * (4 * 9 * 64 + 16 * 64));
        assert_eq!(free(&json!({"c_in": 4, "stride": 2}), [4, 8, 8]).unwrap(), (0, [4, 4, 4]));
        assert_eq!(skip(&json!({"c_in": 4}), [4, 8, 8]).unwrap().0, 0);
        assert_eq!(skip(&json!({"c_in": 4, "stride": 2}), [4, 8, 8]).unwrap().0, 2 * 4 * 2 * 16);
    }
}
