//! Parameters by HF name: the `#[derive(Module)]` field paths of [`crate::runtime::CausalLm`]
//! are the checkpoint names, so export and inspection need no mapping table.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// One parameter's values on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct Collect {
    path: Vec<String>,
    only_trainable: bool,
    out: Vec<NamedTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.only_trainable && !param.is_require_grad() {
            return;
        }
        let t = param.val().inner();
        let shape = t.dims().to_vec();
        let data = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        self.out.push(NamedTensor {
            name: self.path.join("."),
            shape,
            data,
        });
    }
}

/// Every float parameter of `module` in visiting order (constants such as RoPE tables are not
/// parameters and do not appear).
pub fn named_tensors<M: Module>(module: &M) -> Vec<NamedTensor> {
    let mut c = Collect {
        path: Vec::new(),
        only_trainable: false,
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Names and element counts of the parameters that receive gradients.
pub fn trainable_numel<M: Module>(module: &M) -> Vec<(String, usize)> {
    struct V(Vec<String>, Vec<(String, usize)>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.1
                    .push((self.0.join("."), param.shape().num_elements()));
            }
        }
    }
    let mut v = V(Vec::new(), Vec::new());
    module.visit(&mut v);
    v.1
}
