// The /v2 operations the page offers beside conversions: each with the extensions it takes,
// the output it makes, and its parameters in the option-schema shape of /v1/formats (so the
// same form builder shows them; `required` ones are always sent, with their default). Merge works on several files and lives in the batch bar.

const IMAGES = ["jpg", "png", "webp", "gif", "bmp", "tiff"];
const OFFICE = ["docx", "doc", "odt", "rtf", "txt", "html", "xlsx", "xls", "ods", "csv", "pptx", "ppt", "odp"];
const VIDEO = ["mp4", "mov", "mkv", "webm", "avi"];
const POSITIONS = {
  position_vertical: { type: "str", description: "Where on the page, vertically", choices: ["top", "center", "bottom"], default: "center" },
  position_horizontal: { type: "str", description: "Where on the page, horizontally", choices: ["left", "center", "right"], default: "center" },
};

export const OPERATIONS = {
  ocr: {
    label: "OCR: searchable PDF",
    accepts: ["pdf", ...IMAGES],
    output: () => "pdf",
    fixed: { output_format: "pdf" },
    schema: {
      languages: { type: "str", description: "Tesseract languages, e.g. eng or eng+deu", default: "eng" },
    },
    shape(values) {
      if (values.languages) values.languages = values.languages.split(/[+,\s]+/).filter(Boolean);
      return values;
    },
  },
  optimize: {
    label: "Optimize (smaller, same look)",
    accepts: ["pdf", "jpg", "png"],
    output: (ext) => ext,
    schema: {
      profile: { type: "str", description: "web (also fast web view), print, archive or max (drops EXIF and colour profiles)", choices: ["web", "print", "archive", "max"], default: "web" },
    },
  },
  thumbnail: {
    label: "Thumbnail",
    accepts: ["pdf", ...IMAGES, ...VIDEO, ...OFFICE],
    output: (_ext, values) => values.output_format || "png",
    schema: {
      output_format: { type: "str", description: "The thumbnail's format", choices: ["png", "jpg", "webp"], default: "png", required: true },
      width: { type: "int", description: "Box width in pixels", minimum: 1, maximum: 4000 },
      height: { type: "int", description: "Box height in pixels", minimum: 1, maximum: 4000 },
      fit: { type: "str", description: "max: inside the box, never enlarged; crop: cover it; scale: exactly it", choices: ["max", "crop", "scale"], default: "max" },
      timestamp: { type: "str", description: "A video's frame: seconds or HH:MM:SS", default: "0" },
    },
  },
  watermark: {
    label: "Watermark with text",
    accepts: ["pdf", "jpg", "png", "webp", "gif", "tiff", "bmp"],
    output: (ext) => ext,
    schema: {
      text: { type: "str", description: "The text to draw (required)" },
      font_size: { type: "int", description: "The text's size", minimum: 1, maximum: 500, default: 40 },
      font_color: { type: "str", description: "#rrggbb", default: "#000000" },
      opacity: { type: "int", description: "0-100", minimum: 0, maximum: 100, default: 100 },
      rotation: { type: "int", description: "Degrees clockwise", minimum: -360, maximum: 360, default: 0 },
      ...POSITIONS,
      pages: { type: "str", description: "PDF pages, e.g. 1-3,5,8- (empty: all)" },
    },
  },
};

// The batch's merge: these kinds become one PDF (office documents through LibreOffice).
export const MERGEABLE = new Set(["pdf", ...IMAGES, ...OFFICE]);

export function operationsFor(ext) {
  return Object.entries(OPERATIONS)
    .filter(([, op]) => op.accepts.includes(ext))
    .map(([name, op]) => ({ value: `op:${name}`, label: op.label, title: name, operation: name, op }));
}
