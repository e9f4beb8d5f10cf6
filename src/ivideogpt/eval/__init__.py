"""Video prediction evaluation: metrics (PSNR, SSIM, LPIPS, FVD), the best-of-N protocol, reports."""
