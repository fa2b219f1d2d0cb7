//! Rewrites the exported graph into one tract runs faster, with the same arithmetic.
//!
//! tract runs an ONNX `LSTM` as a `Scan` re-entered every step, and a 1-D `Conv` through an
//! im2col copy between two layout transposes. Our shapes are small and fixed (10 flows, 5
//! steps after the pooling), so the same computation written out in plain operators lets
//! tract's optimiser see all of it:
//! - the convolution becomes one product of the `[batch, time, features]` input with every
//!   kernel tap's weights side by side, and each step sums the taps that reach it: no
//!   transposes, no im2col;
//! - the pooling becomes a reshape and an element-wise max of slices, and the convolution's
//!   bias and ReLU move after it (a per-channel shift and a monotone function both commute
//!   with a max over time);
//! - the LSTM becomes per step one product of input and state with the weights stacked,
//!   then the gate non-linearities;
//! - the softmax's rows are padded to a multiple of 4, a length tract's kernels take whole.
//!
//! ONNX runtimes with fused kernels (onnxruntime) keep reading the file as written; only
//! tract's plan changes. The LSTM rewrite needs a forward LSTM with default activations, no
//! clip, no peepholes, no sequence lengths or initial states, constant weights and an unused
//! `Y`; the convolution rewrite needs our front end exactly (transpose, "same" 1-D
//! convolution, ReLU, non-overlapping max pool, transpose). Anything else is left to tract.

use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::{Error, Result};
use crate::onnx::{initializer, int};

/// The model rewritten for tract, or `None` when the graph has no LSTM the rewrite covers.
/// `input_fact` fixes the input shape so the sequence lengths are known.
pub fn for_tract(proto: &ModelProto, input_fact: InferenceFact) -> Result<Option<ModelProto>> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(None);
    };
    if opset(proto) < 13 {
        return Ok(None);
    }
    let candidates: Vec<usize> = (0..graph.node.len())
        .filter(|&i| graph.node[i].op_type == "LSTM" && graph.node[i].domain.is_empty())
        .collect();
    let [index] = candidates[..] else {
        return Ok(None);
    };
    let lstm = &graph.node[index];
    let Some(cell) = Lstm::read(graph, lstm)? else {
        return Ok(None);
    };
    let shapes = Shapes::analyse(proto, input_fact)?;
    let Some(steps) = shapes.dim(&lstm.input[0], 0) else {
        return Ok(None);
    };
    let names = Names::new(&lstm.name);
    let front = FrontEnd::read(graph, &lstm.input[0], &shapes)?;

    let mut nodes = Vec::new();
    let mut init = Vec::new();
    let (sequence, layout, removed) = match &front {
        Some(front) => {
            let seq = front.rewritten(&names, &mut nodes, &mut init);
            (seq, Layout::BatchMajor, front.nodes.clone())
        }
        None => (lstm.input[0].clone(), Layout::TimeMajor, Vec::new()),
    };
    cell.unrolled(lstm, &sequence, layout, steps, &names, &mut nodes, &mut init);

    let mut out = proto.clone();
    let graph = out.graph.as_mut().expect("checked above");
    // The replacement goes where the first replaced node stood: its inputs exist by then, and
    // everything reading its outputs comes after the LSTM.
    let mut removed: Vec<usize> = removed.into_iter().chain([index]).collect();
    removed.sort_unstable();
    let at = removed[0];
    for &i in removed.iter().rev() {
        graph.node.remove(i);
    }
    graph.node.splice(at..at, nodes);
    graph.initializer.extend(init);
    pad_softmax_rows(graph, &shapes);
    Ok(Some(out))
}

/// tract's softmax runs its kernels row by row, and rows whose length is not a multiple of 4
/// (our 9 families) cost more each: over a batch of 256 the softmax took as long as one of the
/// LSTM's products (177 µs on x86, 108 µs padded; aarch64 also has a kernel for whole batches
/// of such rows). Each row is padded with logits of -1e30, whose exponentials are exactly 0,
/// and the padding sliced off after.
fn pad_softmax_rows(graph: &mut GraphProto, shapes: &Shapes) {
    let mut at = 0;
    while at < graph.node.len() {
        let node = &graph.node[at];
        at += 1;
        if node.op_type != "Softmax" || !node.domain.is_empty() || node.input.len() != 1 || node.output.len() != 1 {
            continue;
        }
        let logits = &node.input[0];
        let Some(rank) = shapes.rank(logits) else {
            continue;
        };
        let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(-1, |a| a.i);
        let axis = if axis < 0 { axis + rank as i64 } else { axis };
        if axis != rank as i64 - 1 {
            continue;
        }
        let Some(width) = shapes.dim(logits, rank - 1) else {
            continue;
        };
        if width % 4 == 0 {
            continue;
        }
        let (probs, attribute) = (node.output[0].clone(), node.attribute.clone());
        let name = |s: &str| format!("{probs}.{s}");
        let mut pads = vec![0; 2 * rank];
        pads[2 * rank - 1] = (4 - width % 4) as i64;
        graph.initializer.extend([
            ints_tensor(&name("pads"), &pads),
            initializer(&name("pad_logit"), vec![], &[-1e30]),
            ints_tensor(&name("axis"), &[axis]),
        ]);
        let mut nodes = Vec::new();
        add(
            &mut nodes,
            "Pad",
            &[logits, &name("pads"), &name("pad_logit")],
            &name("padded"),
            vec![],
        );
        add(
            &mut nodes,
            "Softmax",
            &[&name("padded")],
            &name("padded_probs"),
            attribute,
        );
        add_slice(
            &mut nodes,
            &mut graph.initializer,
            &name("padded_probs"),
            &name("axis"),
            &probs,
            ([0], [width as i64]),
        );
        graph.node.splice(at - 1..at, nodes);
        at += 2;
    }
}

fn opset(proto: &ModelProto) -> i64 {
    proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(0)
}

/// Tensor shapes from tract's inference on the graph as written.
struct Shapes(InferenceModel);

impl Shapes {
    fn analyse(proto: &ModelProto, input_fact: InferenceFact) -> Result<Shapes> {
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .with_ignore_output_shapes(true)
            .model_for_proto_model(proto)
            .map_err(Error::tract)?;
        model.set_input_fact(0, input_fact).map_err(Error::tract)?;
        model.analyse(false).map_err(Error::tract)?;
        Ok(Shapes(model))
    }

    fn rank(&self, tensor: &str) -> Option<usize> {
        let fact = self.0.outlet_fact(self.outlet(tensor)?).ok()?;
        fact.shape.rank().concretize().and_then(|r| usize::try_from(r).ok())
    }

    fn outlet(&self, tensor: &str) -> Option<OutletId> {
        // Graph inputs are source nodes named after the tensor, without an outlet label.
        self.0
            .find_outlet_label(tensor)
            .or_else(|| self.0.node_id_by_name(tensor).ok().map(|id| OutletId::new(id, 0)))
    }

    fn dim(&self, tensor: &str, axis: usize) -> Option<usize> {
        let fact = self.0.outlet_fact(self.outlet(tensor)?).ok()?;
        fact.shape
            .dim(axis)
            .and_then(|d| d.concretize())
            .and_then(|d| d.as_i64())
            .and_then(|d| usize::try_from(d).ok())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `[steps, batch, channels]`, as the ONNX LSTM reads it.
    TimeMajor,
    /// `[batch, steps, channels]`, as the rewritten front end leaves it.
    BatchMajor,
}

/// Names of the tensors the rewrite adds, all under the LSTM node's name.
struct Names(String);

impl Names {
    fn new(lstm: &str) -> Names {
        Names(format!("{lstm}.rewritten"))
    }
    fn of(&self, s: &str) -> String {
        format!("{}.{s}", self.0)
    }
}

fn add(nodes: &mut Vec<NodeProto>, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
    nodes.push(NodeProto {
        name: output.to_string(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        attribute,
        ..Default::default()
    });
}

/// A `Slice` of `data` over `axes` named `name`, its bounds written as initialisers.
fn add_slice<const N: usize>(
    nodes: &mut Vec<NodeProto>,
    init: &mut Vec<TensorProto>,
    data: &str,
    axes: &str,
    name: &str,
    (starts, ends): ([i64; N], [i64; N]),
) {
    let (starts_name, ends_name) = (format!("{name}.starts"), format!("{name}.ends"));
    init.push(ints_tensor(&starts_name, &starts));
    init.push(ints_tensor(&ends_name, &ends));
    add(nodes, "Slice", &[data, &starts_name, &ends_name, axes], name, vec![]);
}

/// Combines `piece` with what came before it (`acc`) by the element-wise `op`; returns the
/// name of the result, `{piece}.{suffix}`, or `piece` itself when it is the first.
fn fold(nodes: &mut Vec<NodeProto>, acc: Option<String>, piece: String, op: &str, suffix: &str) -> String {
    match acc {
        None => piece,
        Some(prev) => {
            let next = format!("{piece}.{suffix}");
            add(nodes, op, &[&prev, &piece], &next, vec![]);
            next
        }
    }
}

/// The front end our export writes before the LSTM, read back with its weights.
struct FrontEnd {
    /// Indices of the five nodes it replaces.
    nodes: Vec<usize>,
    /// The `[batch, time, features]` tensor it starts from.
    source: String,
    time: usize,
    features: usize,
    channels: usize,
    kernel: usize,
    pool: usize,
    /// `[features, kernel·channels]`: tap `j`'s weights transposed, side by side.
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl FrontEnd {
    /// Follows the LSTM input back through Transpose ← MaxPool ← Relu ← Conv ← Transpose.
    fn read(graph: &GraphProto, sequence: &str, shapes: &Shapes) -> Result<Option<FrontEnd>> {
        let producer = |tensor: &str, op: &str| {
            let used_once = graph
                .node
                .iter()
                .filter(|n| n.input.iter().any(|i| i == tensor))
                .count()
                == 1
                && graph.output.iter().all(|o| o.name != tensor);
            graph
                .node
                .iter()
                .position(|n| n.op_type == op && n.domain.is_empty() && n.output.len() == 1 && n.output[0] == tensor)
                .filter(|_| used_once)
        };
        let Some(to_seq) = producer(sequence, "Transpose") else {
            return Ok(None);
        };
        let Some(pool) = producer(&graph.node[to_seq].input[0], "MaxPool") else {
            return Ok(None);
        };
        let Some(relu) = producer(&graph.node[pool].input[0], "Relu") else {
            return Ok(None);
        };
        let Some(conv) = producer(&graph.node[relu].input[0], "Conv") else {
            return Ok(None);
        };
        let Some(to_ncl) = producer(&graph.node[conv].input[0], "Transpose") else {
            return Ok(None);
        };
        let perm = |i: usize| ints_attribute(&graph.node[i], "perm");
        if perm(to_ncl).as_deref() != Some(&[0, 2, 1]) || perm(to_seq).as_deref() != Some(&[2, 0, 1]) {
            return Ok(None);
        }

        let conv_node = &graph.node[conv];
        let constant = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let Some(weight) = conv_node.input.get(1).and_then(|w| constant(w)) else {
            return Ok(None);
        };
        let [channels, features, kernel] = weight.dims[..] else {
            return Ok(None);
        };
        let (channels, features, kernel) = (channels as usize, features as usize, kernel as usize);
        if kernel % 2 == 0 {
            return Ok(None);
        }
        let same = (kernel / 2) as i64;
        let conv_ok = conv_node.attribute.iter().all(|a| match a.name.as_str() {
            "kernel_shape" => a.ints == [kernel as i64],
            "pads" => a.ints == [same, same],
            "strides" | "dilations" => a.ints == [1],
            "group" => a.i == 1,
            "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
            _ => false,
        });
        let pool_node = &graph.node[pool];
        let pool_size = ints_attribute(pool_node, "kernel_shape").and_then(|k| match k[..] {
            [k] if k > 0 => Some(k),
            _ => None,
        });
        let Some(pool_size) = pool_size else {
            return Ok(None);
        };
        let pool_ok = pool_node.attribute.iter().all(|a| match a.name.as_str() {
            "kernel_shape" | "strides" => a.ints == [pool_size],
            "pads" => a.ints.iter().all(|&p| p == 0),
            "dilations" => a.ints == [1],
            "ceil_mode" | "storage_order" => a.i == 0,
            "auto_pad" => a.s.is_empty() || a.s == b"NOTSET",
            _ => false,
        });
        let pool_size = pool_size as usize;
        let source = graph.node[to_ncl].input[0].clone();
        let time = shapes.dim(&source, 1);
        let Some(time) = time.filter(|t| t % pool_size == 0 && *t > 0) else {
            return Ok(None);
        };
        if !conv_ok || !pool_ok || shapes.dim(&source, 2) != Some(features) {
            return Ok(None);
        }
        let Some(w) = floats(weight)? else {
            return Ok(None);
        };
        let bias = match conv_node.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => match constant(b).map(floats).transpose()?.flatten() {
                Some(b) if b.len() == channels => b,
                _ => return Ok(None),
            },
            None => vec![0.0; channels],
        };
        // W is [channels, features, kernel]; taps[f, j·channels + c] = W[c, f, j].
        let width = kernel * channels;
        let mut taps = vec![0.0; features * width];
        for c in 0..channels {
            for f in 0..features {
                for j in 0..kernel {
                    taps[f * width + j * channels + c] = w[(c * features + f) * kernel + j];
                }
            }
        }
        Ok(Some(FrontEnd {
            nodes: vec![to_ncl, conv, relu, pool, to_seq],
            source,
            time,
            features,
            channels,
            kernel,
            pool: pool_size,
            taps,
            bias,
        }))
    }

    /// Writes the front end batch-major; returns the `[batch, steps, channels]` tensor.
    fn rewritten(&self, n: &Names, nodes: &mut Vec<NodeProto>, init: &mut Vec<TensorProto>) -> String {
        let (t, c) = (self.time as i64, self.channels as i64);
        let (kernel, half, pool) = (self.kernel as i64, (self.kernel / 2) as i64, self.pool as i64);
        let taps = n.of("conv.taps");
        let taps_out = n.of("conv.taps_out");
        init.push(initializer(&taps, vec![self.features as i64, kernel * c], &self.taps));
        init.push(initializer(&n.of("conv.bias"), vec![c], &self.bias));
        init.push(ints_tensor(&n.of("axes12"), &[1, 2]));
        init.push(ints_tensor(&n.of("axis2"), &[2]));
        add(nodes, "MatMul", &[&self.source, &taps], &taps_out, vec![]);

        // Output step τ sums tap j applied to input step τ + j − half. Steps near either end
        // lose the taps that would read the zero padding, so the output is built in segments
        // (each edge step alone, the inner steps together) from the taps every step of the
        // segment can use, then concatenated: tract's slices and concatenation are plain
        // copies, where a padding operator would be element by element.
        let mut segments: Vec<(i64, i64)> = (0..half.min(t)).map(|s| (s, s + 1)).collect();
        if t > 2 * half {
            segments.push((half, t - half));
        }
        segments.extend((half.max(t - half)..t).map(|s| (s, s + 1)));
        let mut pieces = Vec::new();
        for (from, to) in segments {
            let mut sum: Option<String> = None;
            for j in 0..kernel {
                let (first, last) = (from + j - half, to + j - half);
                if first < 0 || last > t {
                    continue;
                }
                let piece = n.of(&format!("conv.steps{from}_{to}.tap{j}"));
                let bounds = ([first, j * c], [last, (j + 1) * c]);
                add_slice(nodes, init, &taps_out, &n.of("axes12"), &piece, bounds);
                sum = Some(fold(nodes, sum, piece, "Add", "sum"));
            }
            pieces.extend(sum);
        }
        let conv = n.of("conv.out");
        let piece_refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        add(nodes, "Concat", &piece_refs, &conv, vec![int("axis", 1)]);

        // [batch, time, channels] as [batch, steps, pool·channels]: the steps each pooling
        // window takes sit side by side on the last axis, so the max is over slices of it.
        let steps = t / pool;
        let pairs = n.of("pool.windows");
        init.push(ints_tensor(&n.of("pool.shape"), &[0, steps, pool * c]));
        add(nodes, "Reshape", &[&conv, &n.of("pool.shape")], &pairs, vec![]);
        let mut max: Option<String> = None;
        for j in 0..pool {
            let member = n.of(&format!("pool.member{j}"));
            add_slice(nodes, init, &pairs, &n.of("axis2"), &member, ([j * c], [(j + 1) * c]));
            max = Some(fold(nodes, max, member, "Max", "max"));
        }
        let max = max.expect("pool size is at least 1");
        add(nodes, "Add", &[&max, &n.of("conv.bias")], &n.of("pool.biased"), vec![]);
        add(nodes, "Relu", &[&n.of("pool.biased")], &n.of("sequence"), vec![]);
        n.of("sequence")
    }
}

fn ints_attribute(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

/// The weights of a covered LSTM, as the rewrite needs them.
struct Lstm {
    hidden: usize,
    input: usize,
    /// `Wᵀ`, `[input, 4H]`, gate blocks i, o, f, c.
    w_t: Vec<f32>,
    /// `Rᵀ`, `[H, 4H]`.
    r_t: Vec<f32>,
    /// `Wb + Rb`, `[4H]`.
    bias: Vec<f32>,
}

impl Lstm {
    fn read(graph: &GraphProto, node: &NodeProto) -> Result<Option<Lstm>> {
        if !node.attribute.iter().all(default_lstm_attribute) {
            return Ok(None);
        }
        let Some(hidden) = node
            .attribute
            .iter()
            .find(|a| a.name == "hidden_size")
            .and_then(|a| usize::try_from(a.i).ok())
            .filter(|&h| h > 0)
        else {
            return Ok(None);
        };
        // X, W, R and optionally B; sequence_lens, initial_h, initial_c and P must be absent.
        let given = |i: usize| node.input.get(i).is_some_and(|s| !s.is_empty());
        if node.input.len() < 3 || (4..8).any(given) {
            return Ok(None);
        }
        // Y must be unused: the rewrite produces only Y_h and Y_c.
        if let Some(y) = node.output.first().filter(|y| !y.is_empty()) {
            let consumed = graph.node.iter().any(|n| n.input.contains(y)) || graph.output.iter().any(|o| &o.name == y);
            if consumed {
                return Ok(None);
            }
        }
        let constant = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let (Some(w), Some(r)) = (constant(&node.input[1]), constant(&node.input[2])) else {
            return Ok(None);
        };
        let h4 = 4 * hidden;
        let (Some(w), Some(r)) = (floats(w)?, floats(r)?) else {
            return Ok(None);
        };
        if w.len() % h4 != 0 || r.len() != h4 * hidden {
            return Ok(None);
        }
        let input = w.len() / h4;
        let bias = if given(3) {
            let Some(b) = constant(&node.input[3]).map(floats).transpose()?.flatten() else {
                return Ok(None);
            };
            if b.len() != 2 * h4 {
                return Ok(None);
            }
            (0..h4).map(|k| b[k] + b[h4 + k]).collect()
        } else {
            vec![0.0; h4]
        };
        Ok(Some(Lstm {
            hidden,
            input,
            w_t: transpose(&w, h4, input),
            r_t: transpose(&r, h4, hidden),
            bias,
        }))
    }

    /// Writes the LSTM over `sequence` out step by step, ending in `node`'s Y_h and Y_c.
    #[allow(clippy::too_many_arguments)]
    fn unrolled(
        &self,
        node: &NodeProto,
        sequence: &str,
        layout: Layout,
        steps: usize,
        n: &Names,
        nodes: &mut Vec<NodeProto>,
        init: &mut Vec<TensorProto>,
    ) {
        let h = self.hidden as i64;
        // `[Wᵀ; Rᵀ]`: a step after the first multiplies `[x_t, h_{t-1}]` by it in one product.
        let wr_t: Vec<f32> = self.w_t.iter().chain(&self.r_t).copied().collect();
        init.extend([
            initializer(&n.of("lstm.Wt"), vec![self.input as i64, 4 * h], &self.w_t),
            initializer(&n.of("lstm.WRt"), vec![self.input as i64 + h, 4 * h], &wr_t),
            initializer(&n.of("lstm.bias"), vec![4 * h], &self.bias),
            ints_tensor(&n.of("axis0"), &[0]),
            ints_tensor(&n.of("axis1"), &[1]),
            ints_tensor(&n.of("0"), &[0]),
            ints_tensor(&n.of("H"), &[h]),
            ints_tensor(&n.of("2H"), &[2 * h]),
            ints_tensor(&n.of("3H"), &[3 * h]),
            ints_tensor(&n.of("4H"), &[4 * h]),
            ints_tensor(&n.of("pad_right"), &[0, 0, 0, h]),
            ints_tensor(&n.of("pad_left"), &[0, self.input as i64, 0, 0]),
        ]);
        init.extend((0..=steps).map(|k| ints_tensor(&n.of(&format!("step{k}")), &[k as i64])));
        let time_axis = match layout {
            Layout::TimeMajor => n.of("axis0"),
            Layout::BatchMajor => n.of("axis1"),
        };
        let (mut h_prev, mut c_prev) = (String::new(), String::new());
        for t in 0..steps {
            let s = |name: &str| n.of(&format!("lstm.{name}{t}"));
            let (from, to) = (n.of(&format!("step{t}")), n.of(&format!("step{}", t + 1)));
            let mut op = |op: &str, inputs: &[&str], output: &str| add(nodes, op, inputs, output, vec![]);
            op("Slice", &[sequence, &from, &to, &time_axis], &s("x_t"));
            op("Squeeze", &[&s("x_t"), &time_axis], &s("x"));
            // The initial state is zero, so the first step has no recurrent product. Later
            // steps multiply `[x_t, h_{t-1}]` by `[Wᵀ; Rᵀ]` in one product. Adding `x_t·Wᵀ`
            // to `h_{t-1}·Rᵀ` instead makes tract fuse the sum into the second product, whose
            // x86 kernels read the added tile with gathers: twice the time of the product
            // alone. `[x_t, h_{t-1}]` is two zero-padded halves added, because tract splits a
            // product of a `Concat` back into the two products and that sum.
            if t == 0 {
                op("MatMul", &[&s("x"), &n.of("lstm.Wt")], &s("xw"));
            } else {
                op("Pad", &[&s("x"), &n.of("pad_right")], &s("x_padded"));
                op("Pad", &[&h_prev, &n.of("pad_left")], &s("h_padded"));
                op("Add", &[&s("x_padded"), &s("h_padded")], &s("xh"));
                op("MatMul", &[&s("xh"), &n.of("lstm.WRt")], &s("xw"));
            }
            op("Add", &[&s("xw"), &n.of("lstm.bias")], &s("g"));
            let gates = s("g");
            let axis1 = n.of("axis1");
            op("Slice", &[&gates, &n.of("0"), &n.of("3H"), &axis1], &s("iof_in"));
            op("Sigmoid", &[&s("iof_in")], &s("iof"));
            op("Slice", &[&gates, &n.of("3H"), &n.of("4H"), &axis1], &s("c_in"));
            op("Tanh", &[&s("c_in")], &s("cand"));
            op("Slice", &[&s("iof"), &n.of("0"), &n.of("H"), &axis1], &s("i"));
            op("Slice", &[&s("iof"), &n.of("H"), &n.of("2H"), &axis1], &s("o"));
            op("Mul", &[&s("i"), &s("cand")], &s("ic"));
            let c = if t == 0 {
                s("ic")
            } else {
                op("Slice", &[&s("iof"), &n.of("2H"), &n.of("3H"), &axis1], &s("f"));
                op("Mul", &[&s("f"), &c_prev], &s("fc"));
                op("Add", &[&s("fc"), &s("ic")], &s("c"));
                s("c")
            };
            op("Tanh", &[&c], &s("c_tanh"));
            op("Mul", &[&s("o"), &s("c_tanh")], &s("h"));
            h_prev = s("h");
            c_prev = c;
        }
        // Y_h and Y_c are [num_directions = 1, batch, H].
        for (k, last) in [(1, &h_prev), (2, &c_prev)] {
            if let Some(name) = node.output.get(k).filter(|s| !s.is_empty()) {
                add(nodes, "Unsqueeze", &[last, &n.of("axis0")], name, vec![]);
            }
        }
    }
}

/// Attributes that keep the ONNX defaults the rewrite implements.
fn default_lstm_attribute(a: &AttributeProto) -> bool {
    match a.name.as_str() {
        "hidden_size" => true,
        "direction" => a.s.is_empty() || a.s == b"forward",
        "input_forget" | "layout" => a.i == 0,
        _ => false,
    }
}

fn floats(t: &TensorProto) -> Result<Option<Vec<f32>>> {
    if t.data_type != DataType::Float as i32 || t.data_location.is_some_and(|l| l != 0) {
        return Ok(None);
    }
    let count: i64 = t.dims.iter().product();
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    if values.len() as i64 != count {
        return Err(Error::BadModel(format!(
            "initialiser {} holds {} values for dims {:?}",
            t.name,
            values.len(),
            t.dims
        )));
    }
    Ok(Some(values))
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

fn ints_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Net;
    use crate::onnx::ints;
    use crate::score::{GraphPlan, Plan};
    use crate::{FEATURE_COUNT, WINDOW};
    use prost::Message;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn exported(seed: u64) -> ModelProto {
        let flat: Vec<f32> = Net::new(seed)
            .and_then(|n| n.to_flat())
            .expect("net")
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let bytes = crate::onnx::export(&flat, "test").expect("export");
        ModelProto::decode(&bytes[..]).expect("decode")
    }

    fn fact(batch: usize) -> InferenceFact {
        f32::fact([batch, WINDOW, FEATURE_COUNT]).into()
    }

    fn lstm_node(proto: &mut ModelProto) -> &mut NodeProto {
        let graph = proto.graph.as_mut().expect("graph");
        graph.node.iter_mut().find(|n| n.op_type == "LSTM").expect("lstm")
    }

    #[test]
    fn our_graph_is_written_out_in_plain_operators() {
        let rewritten = for_tract(&exported(5), fact(3)).expect("rewrite").expect("covered");
        let graph = rewritten.graph.expect("graph");
        for gone in ["LSTM", "Conv", "MaxPool", "Transpose"] {
            assert!(
                graph.node.iter().all(|n| n.op_type != gone),
                "{gone} is still in the graph"
            );
        }
        // One product of input and state per step after the first.
        let products = graph
            .node
            .iter()
            .filter(|n| n.op_type == "MatMul" && n.input[1].ends_with(".rewritten.lstm.WRt"))
            .count();
        assert_eq!(products, crate::params::STEPS - 1);
        // The 9 family logits reach the softmax padded to 12.
        let softmax = graph.node.iter().find(|n| n.op_type == "Softmax").expect("softmax");
        let pad = graph
            .node
            .iter()
            .find(|n| n.output[0] == softmax.input[0])
            .expect("producer");
        assert_eq!(pad.op_type, "Pad");
        let pads = graph.initializer.iter().find(|t| t.name == pad.input[1]).expect("pads");
        assert_eq!(pads.int64_data, [0, 0, 0, 3]);
    }

    #[test]
    fn rewritten_and_written_plans_agree() {
        assert_plans_agree(&exported(6));
    }

    fn assert_plans_agree(proto: &ModelProto) {
        let bytes = proto.encode_to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let windows: Vec<crate::Window> = (0..9)
            .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| rng.gen_range(-3.0..3.0))))
            .collect();
        for batch in [1, 4, 9] {
            let a = Plan::load_with(&bytes, batch, GraphPlan::Rewritten).expect("rewritten");
            let b = Plan::load_with(&bytes, batch, GraphPlan::AsWritten).expect("as written");
            let (a, b) = (
                a.run_scaled(&windows).expect("run"),
                b.run_scaled(&windows).expect("run"),
            );
            let families = a.families.iter().flatten().zip(b.families.iter().flatten());
            let d = a
                .scores
                .iter()
                .zip(&b.scores)
                .chain(families)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "batch {batch}: the plans differ by {d}");
        }
    }

    #[test]
    fn a_front_end_outside_the_rewrite_is_kept_and_the_lstm_still_unrolled() {
        let mut strided = exported(8);
        let graph = strided.graph.as_mut().expect("graph");
        let conv = graph.node.iter_mut().find(|n| n.op_type == "Conv").expect("conv");
        conv.attribute.retain(|a| a.name != "pads");
        conv.attribute.push(ints("pads", &[2, 2]));
        let rewritten = for_tract(&strided, fact(2)).expect("rewrite").expect("lstm covered");
        let graph = rewritten.graph.expect("graph");
        assert!(graph.node.iter().any(|n| n.op_type == "Conv"));
        assert!(graph.node.iter().all(|n| n.op_type != "LSTM"));
        // The LSTM unrolled time-major (its input straight from the kept front end).
        assert_plans_agree(&strided);
    }

    #[test]
    fn lstms_outside_the_rewrite_are_left_to_tract() {
        let mut reverse = exported(7);
        lstm_node(&mut reverse).attribute.push(AttributeProto {
            name: "direction".into(),
            s: b"reverse".to_vec(),
            ..Default::default()
        });
        assert!(for_tract(&reverse, fact(2)).expect("rewrite").is_none());

        let mut clipped = exported(7);
        lstm_node(&mut clipped).attribute.push(AttributeProto {
            name: "clip".into(),
            f: 1.0,
            ..Default::default()
        });
        assert!(for_tract(&clipped, fact(2)).expect("rewrite").is_none());

        // The full sequence output is consumed: only Y_h and Y_c are written out.
        let mut uses_y = exported(7);
        let y = lstm_node(&mut uses_y).output[0].clone();
        let graph = uses_y.graph.as_mut().expect("graph");
        graph.node.push(NodeProto {
            op_type: "Identity".into(),
            input: vec![y],
            output: vec!["y_copy".into()],
            ..Default::default()
        });
        assert!(for_tract(&uses_y, fact(2)).expect("rewrite").is_none());
    }
}
