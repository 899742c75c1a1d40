// What this server converts (GET /v1/formats) and its presets (GET /v2/presets): the choices a
// file gets, by its extension, and each converter's options as a form made from their schema.

import { el, nextId } from "./dom.js";

export class Catalog {
  constructor(filetypes, presets) {
    this.filetypes = filetypes; // {name: {input_formats, output_formats, options}}
    this.presets = presets; // [{name, filetype, output_format, options, description}]
  }

  // "report.tar.gz" -> "tar.gz", "photo.JPEG" -> "jpg": as the server reads names.
  extension(name) {
    const lower = name.toLowerCase();
    for (const ext of ["tar.gz", "tar.bz2", "tar.xz"]) if (lower.endsWith(`.${ext}`)) return ext;
    const dot = lower.lastIndexOf(".");
    const ext = dot > 0 ? lower.slice(dot + 1) : "";
    return { jpeg: "jpg", tif: "tiff", htm: "html" }[ext] || ext;
  }

  // The filetypes that read this extension, in the server's order (hashes read anything).
  filetypesOf(ext) {
    const named = Object.keys(this.filetypes).filter((ft) =>
      this.filetypes[ft].input_formats.includes(ext),
    );
    const any = Object.keys(this.filetypes).filter((ft) =>
      this.filetypes[ft].input_formats.includes("*"),
    );
    return [...named, ...any];
  }

  // Choices for a file: presets of its filetypes first, then each output format once, the
  // first filetype that makes it deciding the options. Values are "preset:NAME" or "ft:FORMAT".
  choicesFor(ext) {
    const types = this.filetypesOf(ext);
    const presets = this.presets
      .filter((p) => types.includes(p.filetype))
      .map((p) => ({
        value: `preset:${p.name}`,
        label: `${p.name} (${p.output_format})`,
        title: p.description || "",
        filetype: p.filetype,
        format: p.output_format,
        preset: p,
      }));
    const seen = new Set();
    const formats = [];
    for (const ft of types) {
      for (const fmt of this.filetypes[ft].output_formats) {
        if (seen.has(fmt)) continue;
        seen.add(fmt);
        formats.push({ value: `${ft}:${fmt}`, label: fmt, title: ft, filetype: ft, format: fmt });
      }
    }
    return { presets, formats };
  }

  schema(filetype) {
    return (this.filetypes[filetype] && this.filetypes[filetype].options) || {};
  }
}

// The options form of one filetype: numbers with their bounds, choices as selects, switches
// for booleans. Each shows what happens when it is left alone: the preset's value, else the
// schema's `default`, else "default" (the converter decides, e.g. by the output format). Only
// what the person changed is sent (some options are refused where they do not apply), and
// what the API requires (`required`, e.g. a thumbnail's output_format), changed or not.
export function optionsForm(schema, presetOptions = {}) {
  const fields = [];
  const grid = el("div", { className: "options" });
  for (const [name, spec] of Object.entries(schema)) {
    const id = nextId("opt");
    const preset = presetOptions[name];
    const initial = preset !== undefined ? preset : spec.default;
    const whose = preset !== undefined ? "preset" : "default";
    const shown = initial === undefined ? "default" : `${initial} (${whose})`;
    let input;
    if (spec.type === "bool") {
      input = el("input", { id, type: "checkbox", role: "switch", className: "switch" });
      input.checked = initial === true;
    } else if (spec.choices) {
      const preselect = spec.choices.includes(initial);
      input = el(
        "select",
        { id },
        preselect ? null : el("option", { value: "" }, `(${initial === undefined ? "default" : `${whose}: ${initial}`})`),
        spec.choices.map((c) => el("option", { value: c }, c === initial ? `${c} (${whose})` : c)),
      );
      input.value = preselect ? initial : "";
    } else if (spec.type === "int" || spec.type === "float") {
      input = el("input", {
        id,
        type: "number",
        inputmode: spec.type === "int" ? "numeric" : "decimal",
        step: spec.type === "int" ? "1" : "any",
        min: spec.minimum,
        max: spec.maximum,
        placeholder: shown,
      });
    } else {
      input = el("input", { id, type: "text", maxlength: 200, placeholder: shown });
    }
    // What the field holds when left alone: a change from it is what gets sent.
    const untouched = spec.type === "bool" ? input.checked : input.value;
    const said = spec.description || "";
    const range = `${spec.minimum ?? ""}-${spec.maximum ?? ""}`;
    const bounds =
      (spec.minimum !== undefined || spec.maximum !== undefined) && !said.includes(range)
        ? ` (${range.replace("-", "–")})`
        : "";
    const help = el("small", { id: `${id}-help` }, `${spec.description || ""}${bounds}`);
    input.setAttribute("aria-describedby", `${id}-help`);
    input.dataset.option = name;
    const label = el("label", { for: id }, name);
    grid.append(
      el("div", { className: spec.type === "bool" ? "field bool" : "field" }, label, input, help),
    );
    fields.push({ name, spec, input, untouched });
  }
  return {
    node: grid,
    values() {
      const out = {};
      for (const { name, spec, input, untouched } of fields) {
        if (spec.type === "bool") {
          if (input.checked !== untouched) out[name] = input.checked;
        } else if (input.value !== "" && (input.value !== untouched || spec.required)) {
          out[name] = spec.type === "int" ? parseInt(input.value, 10)
            : spec.type === "float" ? parseFloat(input.value) : input.value;
        }
      }
      return out;
    },
    raw() {
      return Object.fromEntries(
        fields.map(({ name, spec, input }) => [name, spec.type === "bool" ? input.checked : input.value]),
      );
    },
    setRaw(raw) {
      for (const { name, spec, input } of fields) {
        if (!(name in raw)) continue;
        if (spec.type === "bool") input.checked = raw[name];
        else input.value = raw[name];
      }
    },
    // A field the API or the browser found wrong: said under it until it is changed.
    mark(input, message) {
      const old = input.parentNode.querySelector(".field-error");
      if (old) old.remove();
      input.setCustomValidity(message);
      const said = el("small", { className: "error field-error" }, message);
      input.parentNode.append(said);
      input.addEventListener("input", () => {
        input.setCustomValidity("");
        said.remove();
      }, { once: true });
      const details = input.closest("details");
      if (details) details.open = true;
    },
    // The browser's own checks (bounds, whole numbers, text in a number field) before
    // anything is sent: each field that fails them is marked; true when all pass.
    check() {
      const bad = fields.filter(({ input }) => !input.checkValidity());
      for (const { input } of bad) this.mark(input, input.validationMessage);
      return bad.length === 0;
    },
    field(name) {
      const found = fields.find((f) => f.name === name);
      return found ? found.input : null;
    },
    empty: fields.length === 0,
  };
}
