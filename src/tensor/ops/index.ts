/** All tensor operations, as functions. */
export * from "./elementwise.js";
export * from "./views.js";
export * from "./reduce.js";
export * from "./matmul.js";
export * from "./nn-functional.js";
export * from "./attention.js";
export * from "./quantized.js";
