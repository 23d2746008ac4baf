/** Benchmarks: `npm run bench`. */
import { formatBenchTable, gemmBench } from "./gemm.js";
import { blasInfo, threads } from "../src/backend/native/native-backend.js";

console.log(`native backend: ${threads()} threads, ${blasInfo()}`);
const rows = await gemmBench({ log: (line) => console.error(line) });
console.log(formatBenchTable(rows));
