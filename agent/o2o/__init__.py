"""What a retailer buys the gateway for: members, proximity offers, click-and-collect, stock, QR codes, KPIs."""
