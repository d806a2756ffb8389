# The Med-CAM DICOM service (medcam-dicom serve). CPU build; for GPUs start from an image with CUDA and
# install a CUDA build of torch instead of the pinned CPU wheel.
FROM python:3.11-slim-bookworm
WORKDIR /opt/medcam
COPY pyproject.toml constraints.txt README.md ./
COPY medcam_dicom ./medcam_dicom
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu -c constraints.txt torch \
 && pip install --no-cache-dir -c constraints.txt ".[redis]"
RUN useradd --system --create-home medcam && mkdir -p /var/lib/medcam && chown medcam /var/lib/medcam
USER medcam
EXPOSE 11112 9100
ENTRYPOINT ["medcam-dicom", "serve"]
CMD ["--bind", "0.0.0.0", "--port", "11112", "--spool", "/var/lib/medcam", "--http-port", "9100"]
