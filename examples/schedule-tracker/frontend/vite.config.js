import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// In development, /api goes to a backend on localhost:8080 (in the image, NGINX proxies it).
export default defineConfig({
  plugins: [react()],
  server: {
    proxy: { '/api': process.env.BACKEND_URL || 'http://localhost:8080' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
  },
});
