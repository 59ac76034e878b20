// FastVMT: show each node's run summary (its "text" UI output) in a read-only box
// under the node. ComfyUI's frontend shows text outputs only on nodes that display
// them (Preview Any does it the same way), so without this the summaries of Extract
// Motion, FastVMT Guidance Sampler (per-step losses and timing), Load Motion, Save
// Motion ("saved output/...") and Motion Fidelity reach only the console and history.
//
// The box is created on the first run and reused after that. It is never serialised:
// not into the workflow's widgets_values (widget.serialize) and not into the API
// prompt (widget.options.serialize), so saved workflows and graphToPrompt() are the
// same as without this extension.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODES = new Set([
  "FastVMTExtractMotion",
  "FastVMTGuidanceSampler",
  "FastVMTLoadMotion",
  "FastVMTSaveMotion",
  "FastVMTMotionFidelity",
]);
const SUMMARY_WIDGET = "fastvmt_summary";

// rows of the text once its long lines wrap in a box `width` px wide (about 6 px a character)
const rows = (text, width) => {
  const perLine = Math.max(20, Math.floor((width - 24) / 6));
  return String(text).split("\n").reduce((n, line) => n + Math.max(1, Math.ceil(line.length / perLine)), 0);
};

function summaryWidget(node) {
  const found = node.widgets?.find((w) => w.name === SUMMARY_WIDGET);
  if (found) return found;
  const widget = ComfyWidgets.STRING(node, SUMMARY_WIDGET, ["STRING", { multiline: true }], app).widget;
  widget.serialize = false;
  widget.options.serialize = false;
  widget.options.getMinHeight = () => Math.min(rows(widget.value, node.size[0]), 16) * 14 + 12;
  const el = widget.inputEl ?? widget.element;
  if (el) {
    el.readOnly = true;
    el.placeholder = "";
    el.style.opacity = "0.85";
    el.title = "FastVMT: summary of the last run (not saved with the workflow)";
  }
  return widget;
}

app.registerExtension({
  name: "FastVMT.RunSummary",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (!text?.length) return;
      summaryWidget(this).value = (Array.isArray(text) ? text : [text]).join("\n");
      const [w, h] = this.computeSize();
      this.setSize([Math.max(w, this.size[0]), Math.max(h, this.size[1])]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
