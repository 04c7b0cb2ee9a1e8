"""The opt-in camera: capture, QR check-in, anonymous audience counts. cv2 is imported only when used."""
