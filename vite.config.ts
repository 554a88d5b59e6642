import { defineConfig } from "vite";

// The UI is built into ui/dist and embedded in the binary by Tauri
// (tauri.conf.json build.frontendDist). There is no dev-server URL in the
// shipped build.
export default defineConfig({
  root: "ui",
  base: "./",
  clearScreen: false,
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "safari15",
    sourcemap: false,
  },
});
