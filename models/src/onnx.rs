//! ONNX export of the network, written with the ONNX protobuf types tract-onnx ships.
//!
//! Graph (opset 13, batch dimension `batch` symbolic):
//! `input [batch,10,78]` → Transpose → Conv(k3, pad 1) → Relu → MaxPool(2) → Transpose to
//! `[5,batch,64]` → LSTM(64) → `Y_h` squeezed → Gemm → Sigmoid = `score [batch,1]`, and
//! Gemm → Softmax = `family_probs [batch,9]`. Every weight is an initialiser.
//!
//! ONNX orders the LSTM gate blocks i, o, f, c and wants one bias `[Wb; Rb]`; candle's
//! blocks are i, f, g, o. [`ONNX_GATES_FROM_CANDLE`] is that mapping, tested against tract.

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::error::Result;
use crate::params::{self, CONV_CHANNELS, HIDDEN, KERNEL, PARAMS, POOL};
use crate::{FAMILIES, FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// ONNX opset the graph is written for.
pub const OPSET: i64 = 13;
/// Name of the graph input.
pub const INPUT: &str = "input";
/// Name of the attack-probability output, `[batch, 1]`.
pub const OUTPUT_SCORE: &str = "score";
/// Name of the family-probability output, `[batch, FAMILY_COUNT]`.
pub const OUTPUT_FAMILY: &str = "family_probs";
/// For each ONNX gate block (i, o, f, c), the candle block (i, f, g, o) it takes.
pub const ONNX_GATES_FROM_CANDLE: [usize; 4] = [0, 3, 1, 2];

/// The ONNX file for these flat parameters. `model_version` is recorded in the metadata.
pub fn export(flat: &[f32], model_version: &str) -> Result<Vec<u8>> {
    Ok(build(flat, model_version, ONNX_GATES_FROM_CANDLE)?.encode_to_vec())
}

/// Builds the model with a given gate mapping (tests use a wrong one as a negative control).
pub(crate) fn build(flat: &[f32], model_version: &str, gates: [usize; 4]) -> Result<ModelProto> {
    params::check_len(flat)?;
    let offsets = params::offsets();
    let tensor = |i: usize| &flat[offsets[i].clone()];
    let dims = |i: usize| PARAMS[i].shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
    let h4 = 4 * HIDDEN;

    let mut init = vec![
        initializer("conv.weight", dims(0), tensor(0)),
        initializer("conv.bias", dims(1), tensor(1)),
        initializer(
            "lstm.W",
            vec![1, h4 as i64, CONV_CHANNELS as i64],
            &reorder_gates(tensor(2), CONV_CHANNELS, gates),
        ),
        initializer(
            "lstm.R",
            vec![1, h4 as i64, HIDDEN as i64],
            &reorder_gates(tensor(3), HIDDEN, gates),
        ),
    ];
    let mut bias = reorder_gates(tensor(4), 1, gates);
    bias.extend(reorder_gates(tensor(5), 1, gates));
    init.push(initializer("lstm.B", vec![1, 2 * h4 as i64], &bias));
    init.push(initializer("score.weight", dims(6), tensor(6)));
    init.push(initializer("score.bias", dims(7), tensor(7)));
    init.push(initializer("family.weight", dims(8), tensor(8)));
    init.push(initializer("family.bias", dims(9), tensor(9)));
    init.push(TensorProto {
        name: "squeeze_axes".into(),
        dims: vec![1],
        data_type: DataType::Int64 as i32,
        int64_data: vec![0],
        ..Default::default()
    });

    let nodes = vec![
        node("Transpose", &[INPUT], &["x_ncl"], vec![ints("perm", &[0, 2, 1])]),
        node(
            "Conv",
            &["x_ncl", "conv.weight", "conv.bias"],
            &["conv"],
            vec![
                ints("kernel_shape", &[KERNEL as i64]),
                ints("pads", &[1, 1]),
                ints("strides", &[1]),
            ],
        ),
        node("Relu", &["conv"], &["relu"], vec![]),
        node(
            "MaxPool",
            &["relu"],
            &["pool"],
            vec![ints("kernel_shape", &[POOL as i64]), ints("strides", &[POOL as i64])],
        ),
        node("Transpose", &["pool"], &["seq"], vec![ints("perm", &[2, 0, 1])]),
        node(
            "LSTM",
            &["seq", "lstm.W", "lstm.R", "lstm.B"],
            &["lstm_y", "lstm_h"],
            vec![int("hidden_size", HIDDEN as i64)],
        ),
        node("Squeeze", &["lstm_h", "squeeze_axes"], &["hidden"], vec![]),
        node(
            "Gemm",
            &["hidden", "score.weight", "score.bias"],
            &["score_logit"],
            vec![int("transB", 1)],
        ),
        node("Sigmoid", &["score_logit"], &[OUTPUT_SCORE], vec![]),
        node(
            "Gemm",
            &["hidden", "family.weight", "family.bias"],
            &["family_logits"],
            vec![int("transB", 1)],
        ),
        node("Softmax", &["family_logits"], &[OUTPUT_FAMILY], vec![int("axis", 1)]),
    ];

    let batch = || Dimension {
        value: Some(DimValue::DimParam("batch".into())),
        ..Default::default()
    };
    let fixed = |d: usize| Dimension {
        value: Some(DimValue::DimValue(d as i64)),
        ..Default::default()
    };
    let graph = GraphProto {
        name: "gatewatch_cnn_lstm".into(),
        node: nodes,
        initializer: init,
        input: vec![value_info(INPUT, vec![batch(), fixed(WINDOW), fixed(FEATURE_COUNT)])],
        output: vec![
            value_info(OUTPUT_SCORE, vec![batch(), fixed(1)]),
            value_info(OUTPUT_FAMILY, vec![batch(), fixed(FAMILY_COUNT)]),
        ],
        ..Default::default()
    };
    let families: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
    let meta = |k: &str, v: String| StringStringEntryProto {
        key: k.into(),
        value: v,
    };
    Ok(ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "gatewatch-models".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "gatewatch CNN-LSTM over windows of 10 flows x 78 scaled CIC-IDS2017 features".into(),
        graph: Some(graph),
        metadata_props: vec![
            meta("gatewatch.model_version", model_version.into()),
            meta("gatewatch.arch_hash", params::arch_hash()),
            meta("gatewatch.families", families.join(",")),
        ],
        ..Default::default()
    })
}

/// Reorders the four gate blocks of a `[4H, cols]` tensor: ONNX block `k` takes candle block
/// `gates[k]`.
fn reorder_gates(values: &[f32], cols: usize, gates: [usize; 4]) -> Vec<f32> {
    let block = HIDDEN * cols;
    gates
        .iter()
        .flat_map(|&g| values[g * block..(g + 1) * block].iter().copied())
        .collect()
}

pub(crate) fn initializer(name: &str, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{windows_tensor, Net};
    use crate::score::{GraphPlan, Plan};
    use candle_core::DType;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn windows(n: usize, seed: u64) -> Vec<crate::Window> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(-2.0..2.0))))
            .collect()
    }

    fn max_diff(net: &Net, plan: &Plan, ws: &[crate::Window]) -> f32 {
        let (scores, families) = net
            .predict(&windows_tensor(ws, DType::F32).expect("t"))
            .expect("candle");
        let out = plan.run_scaled(ws).expect("tract");
        let mut d = 0f32;
        for (i, s) in scores.iter().enumerate() {
            d = d.max((s - out.scores[i]).abs());
            for (a, b) in families[i].iter().zip(&out.families[i]) {
                d = d.max((a - b).abs());
            }
        }
        d
    }

    #[test]
    fn tract_matches_candle() {
        // A larger init spread than the default so the outputs are far from 0.5 and a
        // mismatch shows.
        let net = Net::new(21).expect("net");
        let flat: Vec<f32> = net.to_flat().expect("flat").iter().map(|v| v * 3.0).collect();
        let net = Net::from_flat(&flat).expect("net");
        let bytes = export(&flat, "test").expect("export");
        let ws = windows(7, 1);
        for graph in [GraphPlan::Rewritten, GraphPlan::AsWritten] {
            for batch in [1, 7] {
                let plan = Plan::load_with(&bytes, batch, graph).expect("plan");
                let d = max_diff(&net, &plan, &ws);
                assert!(d <= 1e-4, "{graph:?}, batch {batch}: tract differs from candle by {d}");
            }
        }
    }

    #[test]
    fn wrong_gate_order_is_detected() {
        let net = Net::new(22).expect("net");
        let flat: Vec<f32> = net.to_flat().expect("flat").iter().map(|v| v * 3.0).collect();
        let net = Net::from_flat(&flat).expect("net");
        // ONNX order i, o, f, c filled as i, f, o, c: the mistake of copying candle's order.
        let wrong = build(&flat, "wrong", [0, 1, 3, 2]).expect("build").encode_to_vec();
        let plan = Plan::load(&wrong, 4).expect("plan");
        let d = max_diff(&net, &plan, &windows(4, 2));
        assert!(d > 1e-2, "a wrong gate order must change the outputs, diff {d}");
    }
}
